//! `fanout completions SHELL` and `fanout man --dir DIR`: the shell
//! completions and man pages the package installs, generated from the
//! command line itself (clap_complete, clap_mangen), so they never drift
//! from it. The lab's hidden subcommands are left out of the man pages.
//! Both take the binary's command line as a `clap::Command` (from
//! `main.rs`, which this module does not import).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write fanout.1 and fanout-SUBCOMMAND.1.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// Prints the completion script of `cmd` for `args.shell` on stdout.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> ExitCode {
    clap_complete::generate(args.shell, &mut cmd, "fanout", &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// Writes the man pages of `cmd` into `args.dir` and prints their paths.
pub fn man(args: ManArgs, cmd: clap::Command) -> ExitCode {
    match write_pages(&args.dir, cmd) {
        Ok(pages) => {
            for p in pages {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: writing the man pages into {}: {e}",
                args.dir.display()
            );
            ExitCode::from(1)
        }
    }
}

/// `fanout.1`, then one page per visible subcommand (`fanout-run.1`).
fn write_pages(dir: &std::path::Path, cmd: clap::Command) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let cmd = cmd.disable_help_subcommand(true);
    let mut written = Vec::new();
    let mut page = |name: String, cmd: clap::Command| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut roff)?;
        std::fs::write(&path, roff)?;
        written.push(path);
        Ok(())
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap takes a `&'static str` for a name: one short string per
        // page, in a process that ends right after.
        let name: &'static str = format!("fanout-{}", sub.get_name()).leak();
        page(name.to_owned(), sub.clone().name(name))?;
    }
    page("fanout".to_owned(), cmd)?;
    Ok(written)
}
