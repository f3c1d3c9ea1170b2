//! Documentation generated from the clap definitions, so it never disagrees
//! with the binary: man pages (`nearhost man --dir DIR`) and shell completions
//! (`nearhost completions bash|zsh|fish`).

use std::path::Path;

use anyhow::Context;

/// Writes `nearhost.1` and one `nearhost-SUB.1` per subcommand (nested ones
/// as `nearhost-SUB-SUB.1`) into `dir`; returns the files written.
pub fn man(dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut written = Vec::new();
    // Built first: subcommands then carry the version and their full names
    // ("nearhost agent") for the title and synopsis.
    let mut cmd = crate::cli::command();
    cmd.build();
    write_pages(cmd, "nearhost", dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    cmd: clap::Command, name: &str, dir: &Path, written: &mut Vec<String>,
) -> anyhow::Result<()> {
    let cmd = cmd.display_name(name.to_string());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page).context("render the man page")?;
    std::fs::write(&path, page).with_context(|| format!("write {}", path.display()))?;
    written.push(path.display().to_string());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        write_pages(sub.clone(), &format!("{name}-{}", sub.get_name()), dir, written)?;
    }
    Ok(())
}

/// The completion script for `shell` on stdout.
pub fn completions(shell: clap_complete::Shell) {
    let mut cmd = crate::cli::command();
    clap_complete::generate(shell, &mut cmd, "nearhost", &mut std::io::stdout());
}
