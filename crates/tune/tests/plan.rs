//! Planning on fake `/proc` + `/sys` trees: the study's host must get the
//! study's masks and pins; other shapes are checked by properties.

use nearhost_testkit::fake_host::Shape;
use nearhost_tune::{plan, CpuSet, Host, Options, Profile};
use proptest::prelude::*;

fn new_value<'a>(p: &'a nearhost_tune::Plan, path: &str) -> &'a str {
    p.changes
        .iter()
        .chain(&p.unchanged)
        .find(|c| c.path == path)
        .map(|c| c.new.as_str())
        .unwrap_or_else(|| panic!("{path} is not in the plan: {p:#?}"))
}

#[test]
fn the_studys_host_gets_the_studys_pins_and_masks() {
    // 2 NUMA nodes × 9 cores × 2 threads, one 10 Gbit/s NIC with two IRQ
    // lines; nginx had the second threads (18–35).
    let shape = Shape { nodes: 2, cores: 9, threads: 2, nics: vec![("eth0", 2, Some(0))] };
    let (_dir, host) = shape.host();
    assert_eq!(host.cpus.len(), 36);
    assert_eq!(host.node_cpus(1).to_list(), "9-17,27-35");
    let nic = host.nic("eth0").unwrap();
    assert_eq!(nic.queue_irqs.iter().map(|i| i.number).collect::<Vec<_>>(), [41, 42]);

    let mut opts = Options::new(Profile::Latency);
    opts.reserve = CpuSet::parse_list("18-35").unwrap();
    let p = plan(&host, &opts).unwrap();
    // IRQs on the first core of each node.
    assert_eq!(new_value(&p, "proc/irq/41/smp_affinity_list"), "0");
    assert_eq!(new_value(&p, "proc/irq/42/smp_affinity_list"), "9");
    // The study's RPS mask on both queues, RFS as the study sized it.
    for q in 0..2 {
        let rx = format!("sys/class/net/eth0/queues/rx-{q}");
        assert_eq!(new_value(&p, &format!("{rx}/rps_cpus")), "00000000,0003fdfe");
        assert_eq!(new_value(&p, &format!("{rx}/rps_flow_cnt")), "32768");
    }
    assert_eq!(new_value(&p, "proc/sys/net/core/rps_sock_flow_entries"), "65536");
    // XPS per node.
    assert_eq!(new_value(&p, "sys/class/net/eth0/queues/tx-0/xps_cpus"), "00000000,07fc01ff");
    assert_eq!(new_value(&p, "sys/class/net/eth0/queues/tx-1/xps_cpus"), "0000000f,f803fe00");
    // The sysctls, old → new.
    let fin = p.changes.iter().find(|c| c.path.ends_with("tcp_fin_timeout")).unwrap();
    assert_eq!((fin.old.as_str(), fin.new.as_str()), ("60", "10"));
    let range = p.changes.iter().find(|c| c.path.ends_with("ip_local_port_range")).unwrap();
    assert_eq!(range.old, "32768 60999");
    assert_eq!(new_value(&p, "sys/kernel/debug/sched/migration_cost_ns"), "5000000");
    assert!(p.changes.iter().all(|c| !c.path.ends_with("file-max")), "a higher limit is kept");
    assert_eq!(new_value(&p, "proc/sys/net/ipv4/tcp_max_tw_buckets"), "2000000");
    assert!(p.changes.iter().all(|c| !c.why.is_empty()));
    // The link vector (IRQ 40, named eth0) is not a queue's: left alone.
    assert!(p.changes.iter().all(|c| !c.path.starts_with("proc/irq/40/")));
}

#[test]
fn bad_options_are_refused_with_the_option_named() {
    let shape = Shape { nodes: 1, cores: 2, threads: 1, nics: vec![("eth0", 1, None)] };
    let (_dir, host) = shape.host();
    let mut opts = Options::new(Profile::Latency);
    opts.nics = vec!["eth9".into()];
    let e = plan(&host, &opts).unwrap_err().to_string();
    assert!(e.contains("--nic: no NIC named \"eth9\"") && e.contains("eth0"), "{e}");
    let mut opts = Options::new(Profile::Latency);
    opts.reserve = CpuSet::parse_list("1-4").unwrap();
    let e = plan(&host, &opts).unwrap_err().to_string();
    assert!(e.contains("--reserve-cpus: CPU 2-4 is not on this machine"), "{e}");
    opts.reserve = CpuSet::parse_list("0-1").unwrap();
    let e = plan(&host, &opts).unwrap_err().to_string();
    assert!(e.contains("reserves every CPU"), "{e}");
    let e = "latncy".parse::<Profile>().unwrap_err().to_string();
    assert_eq!(e, "profile: \"latncy\" is not one of latency, throughput");
}

#[test]
fn a_plan_of_a_tuned_host_changes_nothing() {
    let shape = Shape { nodes: 2, cores: 4, threads: 2, nics: vec![("eth0", 4, Some(1))] };
    let dir = tempfile::tempdir().unwrap();
    shape.write(dir.path());
    let opts = Options::new(Profile::Latency);
    let first = plan(&Host::read(dir.path()).unwrap(), &opts).unwrap();
    assert!(!first.changes.is_empty());
    // Write the plan as `apply` would, and plan again.
    for c in &first.changes {
        std::fs::write(dir.path().join(&c.path), format!("{}\n", c.new)).unwrap();
    }
    let second = plan(&Host::read(dir.path()).unwrap(), &opts).unwrap();
    assert!(second.changes.is_empty(), "{:#?}", second.changes);
    assert_eq!(second.unchanged.len(), first.changes.len() + first.unchanged.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn no_cpu_takes_irqs_and_rps_and_reserved_cpus_take_neither(
        nodes in 1u32..=4, cores in 1u32..=8, threads in 1u32..=2,
        queues in 1u32..=8, nic_node in proptest::option::of(0u32..4),
        reserve_bits in any::<u64>(), throughput in any::<bool>(),
    ) {
        let shape = Shape { nodes, cores, threads, nics: vec![("eth0", queues, nic_node)] };
        let n = shape.ncpus();
        let (_dir, host) = shape.host();
        let reserve: CpuSet = (0..n).filter(|c| reserve_bits & (1 << c) != 0).collect();
        let profile = if throughput { Profile::Throughput } else { Profile::Latency };
        let mut opts = Options::new(profile);
        opts.reserve = reserve.clone();
        let Ok(p) = plan(&host, &opts) else {
            // Only refused when nothing is left for the IRQs.
            prop_assert_eq!(reserve.len() as u32, n);
            return Ok(());
        };
        let all: Vec<_> = p.changes.iter().chain(&p.unchanged).collect();
        let mut irq = CpuSet::new();
        for c in all.iter().filter(|c| c.path.starts_with("proc/irq/")) {
            irq = irq.union(&CpuSet::parse_list(&c.new).unwrap());
        }
        prop_assert_eq!(&irq, &p.irq_cpus);
        prop_assert!(irq.is_disjoint(&reserve), "IRQs on reserved CPUs: {irq} / {reserve}");
        for c in all.iter().filter(|c| c.path.ends_with("rps_cpus")) {
            let rps = CpuSet::parse_mask(&c.new).unwrap();
            prop_assert!(rps.is_disjoint(&irq), "{}: RPS {rps} and IRQs {irq}", c.path);
            prop_assert!(rps.is_disjoint(&reserve), "{}: RPS {rps} on reserved {reserve}", c.path);
        }
        // XPS: every mask within one node; in latency, every CPU in exactly one.
        let mut seen = CpuSet::new();
        for c in all.iter().filter(|c| c.path.ends_with("xps_cpus")) {
            let xps = CpuSet::parse_mask(&c.new).unwrap();
            let node_sets: Vec<u32> = xps.iter().filter_map(|c| host.node_of(c)).collect();
            prop_assert!(node_sets.windows(2).all(|w| w[0] == w[1]), "{}: {xps} spans nodes", c.path);
            if profile == Profile::Latency {
                prop_assert!(seen.is_disjoint(&xps));
                seen = seen.union(&xps);
            }
        }
        if profile == Profile::Latency && queues >= nodes {
            prop_assert_eq!(seen, host.all_cpus());
        }
        // Masks are sized for the machine.
        prop_assert!(all.iter().filter(|c| c.path.ends_with("_cpus")).all(|c| c.new.len() == (n.div_ceil(32) * 9 - 1) as usize));
    }
}

#[test]
fn apply_saves_the_originals_and_revert_restores_them_byte_for_byte() {
    let shape = Shape { nodes: 2, cores: 2, threads: 2, nics: vec![("eth0", 2, Some(0))] };
    let dir = tempfile::tempdir().unwrap();
    shape.write(dir.path());
    let root = dir.path();
    let state = root.join("var/lib/nearhost/tune.json");
    let snapshot = || nearhost_testkit::fake_host::snapshot(root, "var/lib/nearhost");
    let before = snapshot();
    let opts = Options::new(Profile::Latency);
    let p = plan(&Host::read(root).unwrap(), &opts).unwrap();
    let made = nearhost_tune::apply(root, &p, &state).unwrap();
    assert_eq!(made.len(), p.changes.len());
    assert_ne!(snapshot(), before);
    // Idempotent: a second apply of a fresh plan changes nothing.
    let again = plan(&Host::read(root).unwrap(), &opts).unwrap();
    assert!(nearhost_tune::apply(root, &again, &state).unwrap().is_empty());
    let (saved, now) = nearhost_tune::status(root, &state).unwrap();
    assert_eq!(saved.profile, Some(Profile::Latency));
    assert!(now.iter().all(|s| s.holds), "{now:#?}");
    // A different profile on top keeps the first originals.
    let t = plan(&Host::read(root).unwrap(), &Options::new(Profile::Throughput)).unwrap();
    nearhost_tune::apply(root, &t, &state).unwrap();
    let restored = nearhost_tune::revert(root, &state).unwrap();
    assert!(!restored.is_empty());
    assert_eq!(snapshot(), before, "revert restores every value byte for byte");
    assert!(!state.exists());
}

#[test]
fn a_refused_write_undoes_the_runs_writes() {
    let shape = Shape { nodes: 1, cores: 4, threads: 1, nics: vec![("eth0", 2, None)] };
    let dir = tempfile::tempdir().unwrap();
    shape.write(dir.path());
    let root = dir.path();
    let state = root.join("tune.json");
    let p = plan(&Host::read(root).unwrap(), &Options::new(Profile::Latency)).unwrap();
    // Make the last planned file unwritable as the kernel would refuse it:
    // a directory where the file was.
    let last = root.join(&p.changes.last().unwrap().path);
    std::fs::remove_file(&last).unwrap();
    std::fs::create_dir(&last).unwrap();
    let first = root.join(&p.changes[0].path);
    let first_before = std::fs::read_to_string(&first).unwrap();
    let err = nearhost_tune::apply(root, &p, &state).unwrap_err().to_string();
    assert!(err.contains(&last.display().to_string()), "{err}");
    assert_eq!(std::fs::read_to_string(&first).unwrap(), first_before, "undone");
    assert!(!state.exists(), "nothing saved for a run that changed nothing");
}
