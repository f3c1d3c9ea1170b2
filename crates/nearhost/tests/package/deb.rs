//! The Debian package, as a user gets it: `scripts/build-deb` packs the binary
//! under test; a clean Debian 12 root (debootstrap minbase, plus man-db and
//! systemd to read the pages and check the unit, plus the package's own
//! dependencies so that `dpkg -i` alone installs it) takes it; then the
//! binary, its man pages, the CNI plugin where runtimes look and the systemd
//! unit are tried there, and `dpkg -r` / `dpkg -P` must leave nothing of it
//! but its configuration, then nothing at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nearhost_testkit::bin;

use crate::repo;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(what: &str, o: Output) -> String {
    assert!(o.status.success(), "{what}: exit {:?}\n{}", o.status.code(), text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A clean root in a temporary directory, removed on drop.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    /// debootstrap minbase of Debian 12 with `include`; downloads are kept in
    /// /var/cache/nearhost/package-root (debootstrap still checks each one).
    fn bootstrap(include: &[String]) -> Root {
        assert!(
            Path::new("/usr/sbin/debootstrap").exists(),
            "debootstrap is missing (scripts/setup.sh installs it)"
        );
        let dir = tempfile::Builder::new().prefix("nh-deb-root").tempdir_in("/var/tmp").unwrap();
        let cache = Path::new("/var/cache/nearhost/package-root");
        std::fs::create_dir_all(cache).unwrap();
        let mirror = std::env::var("NEARHOST_DEBIAN_MIRROR")
            .unwrap_or_else(|_| "http://deb.debian.org/debian".into());
        let o = Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={}", include.join(",")))
            .arg(format!("--cache-dir={}", cache.display()))
            .args(["bookworm"])
            .arg(dir.path())
            .arg(&mirror)
            .output()
            .expect("run debootstrap");
        let log = text(&o);
        assert!(
            o.status.success(),
            "debootstrap of a clean Debian 12 root failed:\n{}",
            nearhost_testkit::images::last_lines(&log, 30)
        );
        Root { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `script` by /bin/sh inside the root, in a mount namespace of its own
    /// with /proc and /dev, with a clean environment.
    fn sh(&self, script: &str) -> Output {
        let r = self.path().display().to_string();
        let setup = format!(
            "mount --bind {r} {r} && mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && \
             exec chroot {r} /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 /bin/sh -c \"$0\""
        );
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c", &setup, script])
            .output()
            .expect("unshare + chroot")
    }

    /// Every path in the root but those a package manager or a run changes
    /// whatever the package (dpkg's database, caches, logs, temp files).
    fn files(&self) -> BTreeSet<String> {
        let out = ok(
            "list the root's files",
            self.sh(
                "find / -xdev \\( -path /proc -o -path /dev -o -path /sys -o -path /run -o -path /tmp \
                 -o -path /var/lib/dpkg -o -path /var/cache -o -path /var/log -o -path /var/lib/systemd \\) -prune -o -print",
            ),
        );
        out.lines().map(str::to_string).collect()
    }
}

/// Builds the .deb from the binary under test.
fn build_deb(out: &Path) -> PathBuf {
    let o = Command::new(repo().join("scripts/build-deb"))
        .args(["--bin", bin(), "--out"])
        .arg(out)
        .output()
        .expect("run scripts/build-deb");
    let deb = PathBuf::from(ok("scripts/build-deb", o).trim());
    assert!(deb.is_file(), "build-deb printed {deb:?}, which is no file");
    deb
}

fn field(deb: &Path, name: &str) -> String {
    let o = Command::new("dpkg-deb").arg("-f").arg(deb).arg(name).output().unwrap();
    ok("dpkg-deb -f", o).trim().to_string()
}

#[test]
fn the_package_installs_in_a_clean_debian_12_root_works_there_and_leaves_only_its_configuration() {
    let out = tempfile::tempdir().unwrap();
    let deb = build_deb(out.path());

    // What the package says about itself.
    let version =
        String::from_utf8_lossy(&Command::new(bin()).arg("--version").output().unwrap().stdout)
            .trim()
            .to_string();
    assert_eq!(field(&deb, "Package"), "nearhost");
    assert_eq!(field(&deb, "Version"), format!("{}-1", env!("CARGO_PKG_VERSION")));
    let depends = field(&deb, "Depends");
    assert!(depends.contains("libc6 (>= ") && depends.contains("nftables"), "Depends: {depends}");
    let contents =
        ok("dpkg-deb -c", Command::new("dpkg-deb").arg("-c").arg(&deb).output().unwrap());
    for (path, mode) in [
        ("./usr/bin/nearhost", "-rwxr-xr-x root/root"),
        ("./etc/nearhost/agent.env", "-rw------- root/root"),
        ("./lib/systemd/system/nearhost-agent.service", "-rw-r--r-- root/root"),
        ("./usr/share/man/man1/nearhost.1.gz", "-rw-r--r-- root/root"),
        ("./usr/share/man/man1/nearhost-agent.1.gz", "-rw-r--r-- root/root"),
        ("./usr/share/bash-completion/completions/nearhost", "-rw-r--r-- root/root"),
        ("./usr/share/zsh/vendor-completions/_nearhost", "-rw-r--r-- root/root"),
        ("./usr/share/fish/vendor_completions.d/nearhost.fish", "-rw-r--r-- root/root"),
        ("./usr/share/doc/nearhost/copyright", "-rw-r--r-- root/root"),
        ("./usr/share/doc/nearhost/changelog.Debian.gz", "-rw-r--r-- root/root"),
        ("./usr/share/doc/nearhost/changelog.gz", "-rw-r--r-- root/root"),
        ("./usr/lib/cni/nearhost -> ../../bin/nearhost", "lrwxrwxrwx root/root"),
        ("./usr/libexec/netavark/nearhost -> ../../bin/nearhost", "lrwxrwxrwx root/root"),
        ("./etc/nearhost/net.d/", "drwxr-xr-x root/root"),
    ] {
        assert!(
            contents.lines().any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} ({mode}) is not in the package:\n{contents}"
        );
    }

    // A clean root with what it takes to use the package: its dependencies
    // (by name, from its Depends), man-db and systemd.
    let mut include: Vec<String> =
        depends.split(',').map(|d| d.split_whitespace().next().unwrap().to_string()).collect();
    include.extend(["man-db".to_string(), "systemd".to_string()]);
    let root = Root::bootstrap(&include);
    let before = root.files();
    std::fs::copy(&deb, root.path().join("tmp/nearhost.deb")).unwrap();
    ok("dpkg -i", root.sh("dpkg -i /tmp/nearhost.deb"));

    // The binary, the same build as the one under test.
    let v = ok("nearhost --version", root.sh("nearhost --version"));
    assert_eq!(v.trim(), version, "the packaged binary is another build");
    // The man pages, through man-db.
    let page = ok("man nearhost", root.sh("MANPAGER=cat COLUMNS=80 man nearhost"));
    assert!(page.contains("NAME") && page.contains("install-cni"), "man nearhost:\n{page}");
    let page = ok("man nearhost-agent", root.sh("MANPAGER=cat COLUMNS=80 man nearhost-agent"));
    assert!(
        page.contains("--etcd") && page.contains("NEARHOST_ETCD"),
        "man nearhost-agent:\n{page}"
    );
    // The CNI plugin where runtimes look, through the CNI protocol (the
    // /opt link is postinst's: a package must own nothing in /opt).
    let link = ok("readlink", root.sh("readlink /opt/cni/bin/nearhost"));
    assert_eq!(link.trim(), "/usr/bin/nearhost");
    for plugin in ["/opt/cni/bin/nearhost", "/usr/lib/cni/nearhost"] {
        let reply = ok(
            &format!("CNI VERSION through {plugin}"),
            root.sh(&format!(
                "echo '{{\"cniVersion\": \"1.0.0\"}}' | CNI_COMMAND=VERSION {plugin}"
            )),
        );
        let v: serde_json::Value = serde_json::from_str(&reply)
            .unwrap_or_else(|e| panic!("{plugin} VERSION: {e}: {reply}"));
        assert_eq!(v["cniVersion"], "1.0.0", "{reply}");
        assert!(
            v["supportedVersions"].as_array().is_some_and(|a| a.contains(&"1.1.0".into())),
            "{reply}"
        );
    }
    // The netavark plugin where Podman 5 looks, through netavark's protocol.
    let info = ok("netavark info", root.sh("/usr/libexec/netavark/nearhost info"));
    let info: serde_json::Value =
        serde_json::from_str(&info).unwrap_or_else(|e| panic!("plugin info: {e}: {info}"));
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert_eq!(info["api_version"], "1.0.0", "{info}");
    // The unit, as systemd reads it; the settings file root's alone.
    let verify = root.sh("systemd-analyze verify /lib/systemd/system/nearhost-agent.service");
    assert!(
        verify.status.success() && !text(&verify).contains("nearhost-agent.service"),
        "systemd-analyze verify:\n{}",
        text(&verify)
    );
    let mode = ok("stat", root.sh("stat -c '%a %U' /etc/nearhost/agent.env"));
    assert_eq!(mode.trim(), "600 root", "the agent's settings may hold etcd credentials");
    // bash completion loads and knows the subcommands.
    let comp = ok(
        "bash completion",
        root.sh(
            "bash -c '. /usr/share/bash-completion/completions/nearhost; \
             COMP_WORDS=(nearhost ins); COMP_CWORD=1; _nearhost nearhost ins nearhost; echo \"${COMPREPLY[@]}\"'",
        ),
    );
    assert!(comp.contains("install-cni"), "bash completes `nearhost ins` to {comp:?}");

    // Removal keeps the configuration and nothing else; purge removes that too.
    ok("dpkg -r", root.sh("dpkg -r nearhost"));
    let after = root.files();
    let left: Vec<_> = after.difference(&before).collect();
    assert_eq!(
        left,
        ["/etc/nearhost", "/etc/nearhost/agent.env"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>(),
        "dpkg -r left more (or less) than the configuration"
    );
    let gone: Vec<_> = before.difference(&after).collect();
    assert!(gone.is_empty(), "dpkg -r removed what was there before: {gone:?}");
    ok("dpkg -P", root.sh("dpkg -P nearhost"));
    let purged = root.files();
    let left: Vec<_> = purged.symmetric_difference(&before).collect();
    assert!(left.is_empty(), "dpkg -P left the root changed: {left:?}");
}
