//! The command line's own documentation, generated from its clap definitions:
//! the version with the commit, man pages, shell completions.

use std::process::Command;

use nearhost_testkit::bin;

fn out(args: &[&str]) -> String {
    let o = Command::new(bin()).args(args).output().expect("run nearhost");
    assert!(o.status.success(), "nearhost {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `--version` names the commit: from git in a checkout, from the COMMIT file
/// `git archive` fills in otherwise (the fresh-root check builds from one).
#[test]
fn version_names_the_version_and_the_commit() {
    let v = out(&["--version"]);
    let commit = v
        .trim()
        .strip_prefix(&format!("nearhost {} (commit ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {v:?}"));
    assert!(
        commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "not a commit: {commit:?}"
    );
    let git = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Some(g) = git.ok().filter(|g| g.status.success()) {
        assert_eq!(commit, String::from_utf8_lossy(&g.stdout).trim(), "the checkout's HEAD");
    }
    assert!(out(&["version"])
        .starts_with(&format!("nearhost {}", v.trim().trim_start_matches("nearhost "))));
}

#[test]
fn man_pages_cover_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let listed = out(&["man", "--dir", &dir.path().display().to_string()]);
    for page in [
        "nearhost", "nearhost-agent", "nearhost-bench", "nearhost-demo", "nearhost-attach",
        "nearhost-pool-create", "nearhost-ipam-repair",
    ] {
        let path = dir.path().join(format!("{page}.1"));
        assert!(listed.contains(&path.display().to_string()), "{page}.1 not listed: {listed}");
        // roff escapes a hyphen as `\-`.
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{page}.1: {e}"))
            .replace("\\-", "-");
        let title = text.lines().find(|l| l.starts_with(".TH ")).unwrap_or("");
        assert!(title.starts_with(&format!(".TH {page} 1 ")), "{page}.1's title line: {title:?}");
        assert!(title.contains(env!("CARGO_PKG_VERSION")), "{page}.1's title line: {title:?}");
    }
    let top = std::fs::read_to_string(dir.path().join("nearhost.1")).unwrap();
    for sub in ["agent", "bench", "demo", "attach", "ipam", "man", "completions"] {
        assert!(top.contains(sub), "nearhost.1 does not mention {sub}");
    }
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let script = out(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nearhost.bash");
    std::fs::write(&file, script).unwrap();
    // Load it into bash and ask it, as the shell would on <TAB> after "nearhost a".
    let probe = format!(
        "source {}; COMP_WORDS=(nearhost a); COMP_CWORD=1; COMP_LINE='nearhost a'; COMP_POINT=10; _nearhost nearhost a nearhost; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let o = Command::new("bash").args(["-c", &probe]).output().unwrap();
    let words = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for w in ["agent", "attach"] {
        assert!(words.lines().any(|l| l == w), "no {w} in {words:?}");
    }
    for shell in ["zsh", "fish"] {
        let s = out(&["completions", shell]);
        assert!(s.contains("nearhost") && s.contains("agent"), "{shell}: {s}");
    }
}
