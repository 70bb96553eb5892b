//! The Debian package (issue 13 item 5): the `.deb` that `cargo xtask
//! package` built, named by `FANOUT_DEB` (`cargo xtask test` sets it).
//! Without it a test fails under `FANOUT_REQUIRE_PRIVILEGED=1` and skips
//! loudly otherwise.
//!
//! - [`the_package_holds_the_product`] reads the archive without installing
//!   it (no privilege): its control data, conffiles and files, the files
//!   themselves (`dpkg-deb -x` into a scratch directory), the stripped
//!   binary and its debug symbols in the `-dbgsym` `.ddeb` beside it.
//! - [`dpkg_installs_a_working_fanout_and_purge_removes_it`] installs it on
//!   this machine (root): the installed `fanout --version` and `fanout
//!   check` (the installed example, in a lab edge namespace, whose
//!   interfaces it names, and in a namespace without them),
//!   `systemd-analyze verify` of the installed unit with its man page, `man
//!   -w`, the bash completion; then `dpkg --purge` leaves nothing behind. A
//!   package named fanout already known to dpkg, or any of its files on
//!   disk, fails the test before anything is installed: an operator's
//!   install is never clobbered. The [`Installed`] guard purges also when
//!   the test panics.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{DEADLINE, Scratch};
use fanout::lab::{Finished, Lab, Netns, Process, unique_prefix};

/// The variable naming the package under test.
const DEB_ENV: &str = "FANOUT_DEB";

/// How long dpkg may take to install or purge (man-db's trigger included).
const DPKG_DEADLINE: Duration = Duration::from_secs(120);

/// The example configuration, installed as `/etc/fanout/fanout.toml`.
const EXAMPLE: &str = include_str!("../userspace/fanout.example.toml");

/// The unit, installed as `/usr/lib/systemd/system/fanout.service`.
const UNIT: &str = include_str!("../userspace/dist/fanout.service");

/// Where the package puts the unit.
const UNIT_PATH: &str = "/usr/lib/systemd/system/fanout.service";

/// Every regular file of the package, with its mode.
const FILES: &[(&str, &str)] = &[
    ("./etc/fanout/fanout.toml", "-rw-r--r--"),
    ("./usr/bin/fanout", "-rwxr-xr-x"),
    ("./usr/lib/systemd/system/fanout.service", "-rw-r--r--"),
    (
        "./usr/share/bash-completion/completions/fanout",
        "-rw-r--r--",
    ),
    ("./usr/share/doc/fanout/README.md", "-rw-r--r--"),
    ("./usr/share/doc/fanout/configuration.md", "-rw-r--r--"),
    ("./usr/share/doc/fanout/copyright", "-rw-r--r--"),
    ("./usr/share/doc/fanout/examples/fanout.toml", "-rw-r--r--"),
    (
        "./usr/share/fish/vendor_completions.d/fanout.fish",
        "-rw-r--r--",
    ),
    ("./usr/share/man/man1/fanout-check.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/fanout-completions.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/fanout-ctl.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/fanout-run.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/fanout-top.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/fanout-xdp.1.gz", "-rw-r--r--"),
    ("./usr/share/man/man1/fanout.1.gz", "-rw-r--r--"),
    ("./usr/share/zsh/vendor-completions/_fanout", "-rw-r--r--"),
];

/// The man pages, by name.
const PAGES: &[&str] = &[
    "fanout",
    "fanout-check",
    "fanout-completions",
    "fanout-run",
    "fanout-xdp",
];

/// What must not be on disk before the install and after the purge: the
/// package's files, its configuration directory, the unit's enablement
/// and mask links.
const LEFTOVERS: &[&str] = &[
    "/usr/bin/fanout",
    "/etc/fanout",
    UNIT_PATH,
    "/etc/systemd/system/fanout.service",
    "/etc/systemd/system/multi-user.target.wants/fanout.service",
    "/usr/share/man/man1/fanout.1.gz",
    "/usr/share/doc/fanout",
];

/// The `PATH` systemd gives a service.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `cmd` (the installed fanout, or `ip netns exec` of it) with the
/// environment systemd gives the service: nothing but `PATH`, so no
/// `FANOUT_*` override of the test's own (`FANOUT_EBPF_OBJ`) reaches it.
fn as_a_service(cmd: &mut Command) -> &mut Command {
    cmd.env_clear().env("PATH", SYSTEMD_PATH)
}

/// The package under test, or `None` (the test skipped loudly).
fn deb(test: &str) -> Option<PathBuf> {
    match std::env::var_os(DEB_ENV) {
        Some(p) if !p.is_empty() => {
            let path = PathBuf::from(p);
            assert!(
                path.is_file(),
                "{test}: {DEB_ENV}={} is not a file",
                path.display()
            );
            Some(path)
        }
        _ => {
            let reason =
                format!("{DEB_ENV} is not set (cargo xtask test builds the package and sets it)");
            if std::env::var("FANOUT_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
                panic!("{test}: FANOUT_REQUIRE_PRIVILEGED=1 but {reason}");
            }
            fanout::lab::skip_loudly(test, &reason);
            None
        }
    }
}

/// Runs `cmd` to completion within `deadline`: its status and output.
fn run_within(cmd: &mut Command, deadline: Duration) -> Finished {
    let what = format!("{cmd:?}");
    let mut p = Process::spawn(&what, cmd).unwrap_or_else(|e| panic!("{what}: {e}"));
    p.finish(deadline).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Runs `cmd` within [`DEADLINE`]: its status and output.
fn run(cmd: &mut Command) -> Finished {
    run_within(cmd, DEADLINE)
}

/// Runs `cmd`, which must succeed: its stdout.
fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let f = run(cmd);
    assert!(
        f.status.success(),
        "{what}: {}\nstdout:\n{}\nstderr:\n{}",
        f.status,
        f.stdout,
        f.stderr
    );
    f.stdout
}

fn cmd<const N: usize>(program: &str, args: [&str; N]) -> Command {
    let mut c = Command::new(program);
    c.args(args);
    c
}

/// `dpkg-deb ARGS DEB` (the archive last).
fn dpkg_deb(args: &[&str], deb: &Path) -> String {
    ok(Command::new("dpkg-deb").args(args).arg(deb))
}

/// The `-dbgsym` `.ddeb` cargo-deb writes beside `deb`.
fn ddeb_of(deb: &Path) -> PathBuf {
    let name = deb.file_name().unwrap().to_str().unwrap();
    let rest = name
        .strip_prefix("fanout_")
        .and_then(|r| r.strip_suffix(".deb"))
        .unwrap_or_else(|| panic!("{}: not fanout_VERSION_ARCH.deb", deb.display()));
    deb.with_file_name(format!("fanout-dbgsym_{rest}.ddeb"))
}

/// `fanout --version` of the product: the version, the revision the
/// package was built from (`FANOUT_REVISION` when set, else `git
/// describe`, as `cargo xtask package` does) and the XDP program of this
/// checkout (`FANOUT_EBPF_OBJ` or the release build), by size and SHA-256.
fn expected_version() -> String {
    let revision = match std::env::var("FANOUT_REVISION") {
        Ok(r) if !r.is_empty() => r,
        _ => ok(Command::new("git")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["describe", "--always", "--dirty", "--abbrev=12"]))
        .trim()
        .to_owned(),
    };
    let object = fanout::lab::xdp_object_path();
    let size = std::fs::metadata(&object)
        .unwrap_or_else(|e| panic!("the XDP object {}: {e}", object.display()))
        .len();
    let sum = ok(Command::new("sha256sum").arg(&object));
    let sha = sum.split_whitespace().next().unwrap();
    format!(
        "fanout {}\nrevision: {revision}\nxdp program: embedded, {size} bytes, sha256 {sha}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The control data, the conffiles, every file with its mode and owner,
/// the files' contents, the man pages gzipped, the completions, the
/// product build (no lab), the stripped binary and its debug symbols.
#[test]
fn the_package_holds_the_product() {
    let test = "the_package_holds_the_product";
    let Some(deb) = deb(test) else { return };

    let arch = ok(&mut cmd("dpkg", ["--print-architecture"]));
    let fields = [
        "Package",
        "Version",
        "Architecture",
        "Section",
        "Priority",
        "Maintainer",
    ];
    let control = dpkg_deb(&["--field"], &deb);
    let mut want = String::new();
    for (field, value) in fields.iter().zip([
        "fanout",
        &format!("{}-1", env!("CARGO_PKG_VERSION")),
        arch.trim(),
        "net",
        "optional",
        "fanout maintainers <fanout@example.invalid>",
    ]) {
        want.push_str(&format!("{field}: {value}\n"));
    }
    let mut got = String::new();
    for line in control.lines() {
        if fields.iter().any(|f| line.starts_with(&format!("{f}: "))) {
            got.push_str(line);
            got.push('\n');
        }
    }
    assert_eq!(got, want, "{control}");
    // iproute2 (the engine runs `ip`) and what dpkg-shlibdeps found.
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends: {control}"));
    let depends: Vec<&str> = depends.split(", ").collect();
    assert!(
        depends.contains(&"iproute2") && depends.iter().any(|d| d.starts_with("libc6 (>= ")),
        "Depends: {depends:?}"
    );
    let synopsis = format!("Description: {}", env!("CARGO_PKG_DESCRIPTION"));
    assert!(
        control.lines().any(|l| l == synopsis),
        "the synopsis is the crate's description: {control}"
    );

    // `dpkg-deb --info` lists them as `SIZE bytes, N lines [*] NAME ...`.
    assert_eq!(
        dpkg_deb(&["--info"], &deb)
            .lines()
            .filter_map(|l| l.split_once(" lines "))
            .map(|(_, rest)| rest.trim_start_matches([' ', '*']))
            .map(|rest| rest.split_whitespace().next().unwrap().to_owned())
            .collect::<Vec<_>>(),
        ["conffiles", "control", "postinst", "postrm", "prerm"],
        "the control members"
    );
    let conffiles = ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles, "/etc/fanout/fanout.toml\n");
    // Neither enabled nor started on install, stopped on removal.
    let postinst = ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("postinst"));
    assert!(
        postinst.contains("deb-systemd-helper update-state fanout.service")
            && !postinst.contains("deb-systemd-invoke start"),
        "postinst:\n{postinst}"
    );
    let prerm = ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("prerm"));
    assert!(
        prerm.contains("deb-systemd-invoke stop fanout.service"),
        "prerm:\n{prerm}"
    );

    // Every regular file, its mode and owner; no link, nothing else.
    let contents = dpkg_deb(&["--contents"], &deb);
    let mut files: Vec<(String, String)> = Vec::new();
    for line in contents.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(
            cols.len() == 6 && cols[1] == "0/0",
            "one path per line, owned by root: {line:?}"
        );
        match cols[0].chars().next() {
            Some('d') => assert_eq!(cols[0], "drwxr-xr-x", "{line}"),
            Some('-') => files.push((cols[5].to_owned(), cols[0].to_owned())),
            _ => panic!("neither a directory nor a regular file: {line}"),
        }
    }
    files.sort();
    let want: Vec<(String, String)> = FILES
        .iter()
        .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(files, want, "{contents}");

    // The files themselves.
    let scratch = Scratch::new(&unique_prefix("deb"));
    let root = scratch.path("root");
    ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let read = |p: &str| {
        let path = root.join(p);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert_eq!(read("etc/fanout/fanout.toml"), EXAMPLE);
    assert_eq!(read("usr/share/doc/fanout/examples/fanout.toml"), EXAMPLE);
    assert_eq!(read("usr/lib/systemd/system/fanout.service"), UNIT);
    for page in PAGES {
        let roff = ok(Command::new("gzip")
            .arg("-dc")
            .arg(root.join(format!("usr/share/man/man1/{page}.1.gz"))));
        assert!(
            roff.lines()
                .any(|l| l.starts_with(&format!(".TH {page} 1 "))),
            "{page}.1 is a man page of section 1:\n{roff}"
        );
    }
    let bash = read("usr/share/bash-completion/completions/fanout");
    assert!(bash.contains("_fanout()"), "{bash}");
    let zsh = read("usr/share/zsh/vendor-completions/_fanout");
    assert!(zsh.starts_with("#compdef fanout\n"), "{zsh}");
    let fish = read("usr/share/fish/vendor_completions.d/fanout.fish");
    assert!(fish.contains("complete -c fanout "), "{fish}");

    // The product: built without the lab.
    let binary = root.join("usr/bin/fanout");
    let lab = run(Command::new(&binary).args(["lab", "--help"]));
    assert_eq!(lab.status.code(), Some(2), "{}", lab.stderr);
    assert!(
        lab.stderr
            .starts_with("error: unrecognized subcommand 'lab'\n"),
        "{}",
        lab.stderr
    );

    // Stripped, and its debug symbols in the .ddeb under its build id.
    let sections = ok(cmd("readelf", ["-S", "-W"]).arg(&binary));
    assert!(
        !sections.contains(".debug_info"),
        "the shipped binary is stripped:\n{sections}"
    );
    let notes = ok(cmd("readelf", ["-n"]).arg(&binary));
    let build_id = notes
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .unwrap_or_else(|| panic!("no build id:\n{notes}"));
    let ddeb = ddeb_of(&deb);
    assert!(ddeb.is_file(), "{} is missing", ddeb.display());
    let symbols = dpkg_deb(&["--contents"], &ddeb);
    let want = format!(
        "./usr/lib/debug/.build-id/{}/{}.debug",
        &build_id[..2],
        &build_id[2..]
    );
    assert!(
        symbols
            .lines()
            .any(|l| l.starts_with('-') && l.ends_with(&want)),
        "{want} in {}:\n{symbols}",
        ddeb.display()
    );
    assert_eq!(
        dpkg_deb(&["--field"], &ddeb)
            .lines()
            .find(|l| l.starts_with("Package: ")),
        Some("Package: fanout-dbgsym")
    );
}

/// The package installed on this machine with `dpkg -i`, purged (`dpkg
/// --purge fanout`) when dropped unless [`Installed::purge`] did it.
#[derive(Debug)]
struct Installed {
    purged: bool,
}

impl Installed {
    /// Installs `deb`, after checking that dpkg knows no package named
    /// fanout and that none of [`LEFTOVERS`] exists (it panics otherwise,
    /// having changed nothing).
    fn install(deb: &Path) -> Installed {
        if let Some(status) = dpkg_status() {
            panic!(
                "dpkg already knows a package named fanout ({status}): this test installs and \
                 purges its own, so it refuses to run here (remove it with `dpkg --purge fanout`)"
            );
        }
        for path in LEFTOVERS {
            assert!(
                std::fs::symlink_metadata(path).is_err(),
                "{path} exists although no fanout package is installed: this test would \
                 overwrite and then remove it, so it refuses to run here"
            );
        }
        let guard = Installed { purged: false };
        let f = run_within(Command::new("dpkg").arg("-i").arg(deb), DPKG_DEADLINE);
        assert!(
            f.status.success(),
            "dpkg -i {}: {}\n{}\n{}",
            deb.display(),
            f.status,
            f.stdout,
            f.stderr
        );
        guard
    }

    /// `dpkg --purge fanout`, which must succeed.
    fn purge(mut self) {
        self.purged = true;
        let f = run_within(&mut cmd("dpkg", ["--purge", "fanout"]), DPKG_DEADLINE);
        assert!(
            f.status.success(),
            "dpkg --purge fanout: {}\n{}\n{}",
            f.status,
            f.stdout,
            f.stderr
        );
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if self.purged {
            return;
        }
        // Never panic in drop (the test may be unwinding): say it loudly.
        match Command::new("dpkg").args(["--purge", "fanout"]).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "package test: dpkg --purge fanout failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("package test: could not run dpkg --purge fanout: {e}"),
        }
    }
}

/// dpkg's status of a package named fanout, `None` when dpkg knows none
/// (or only as not installed, with no configuration left).
fn dpkg_status() -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "fanout"])
        .output()
        .expect("run dpkg-query");
    let status = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !status.is_empty() && !status.ends_with(" not-installed"))
        .then_some(status)
}

/// Installed with `dpkg -i`: the files in place, the unit not enabled;
/// `fanout --version` names the revision and the embedded program; `fanout
/// check` reads the installed configuration by default (the plan in the
/// lab's edge namespace, the missing interface named in an empty one);
/// `systemd-analyze verify` accepts the unit, man page included; `man -w`
/// finds the pages; bash completes fanout. Purged: nothing left.
#[test]
fn dpkg_installs_a_working_fanout_and_purge_removes_it() {
    let test = "dpkg_installs_a_working_fanout_and_purge_removes_it";
    if !fanout::lab::privileged(test) {
        return;
    }
    let Some(deb) = deb(test) else { return };
    let version = expected_version();
    let installed = Installed::install(&deb);

    assert_eq!(dpkg_status().as_deref(), Some("install ok installed"));
    let conffiles = ok(&mut cmd("dpkg-query", ["-W", "-f=${Conffiles}", "fanout"]));
    assert!(
        conffiles
            .trim_start()
            .starts_with("/etc/fanout/fanout.toml "),
        "dpkg's conffiles of fanout: {conffiles:?}"
    );
    assert_eq!(
        std::fs::read_to_string("/etc/fanout/fanout.toml").unwrap(),
        EXAMPLE
    );
    assert_eq!(std::fs::read_to_string(UNIT_PATH).unwrap(), UNIT);
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/fanout.service").exists(),
        "the unit is not enabled on install"
    );

    assert_eq!(
        ok(as_a_service(&mut cmd("/usr/bin/fanout", ["--version"]))),
        version
    );

    // The example names the lab's edge interfaces: there it checks out.
    let lab = Lab::up(&unique_prefix("pkg")).unwrap_or_else(|e| panic!("lab up: {e}"));
    let mut check = lab.edge.command("/usr/bin/fanout");
    let f = run(as_a_service(check.arg("check")));
    assert_eq!(f.status.code(), Some(0), "{}\n{}", f.stdout, f.stderr);
    let lines: Vec<&str> = f.stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"/etc/fanout/fanout.toml: OK"),
        "{}",
        f.stdout
    );
    for want in [
        "  xdp_object:   embedded",
        "  flow \"iptv-1\": xdp",
        "  flow \"media-v6\": socket (XDP refused: flow \"media-v6\" output \
         \"unicast [2001:db8:202::2]:6004\": no interface set, and the route to \
         2001:db8:202::2: `ip -j route get 2001:db8:202::2` failed: RTNETLINK answers: \
         Network is unreachable)",
    ] {
        assert!(lines.contains(&want), "{want:?} in:\n{}", f.stdout);
    }
    // Without them, the error names the file, the line and the interface.
    let bare =
        Netns::new(&format!("{}-bare", lab.prefix())).unwrap_or_else(|e| panic!("namespace: {e}"));
    let mut check = bare.command("/usr/bin/fanout");
    let f = run(as_a_service(check.arg("check")));
    assert_eq!(f.status.code(), Some(2), "{}\n{}", f.stdout, f.stderr);
    assert_eq!(f.stdout, "");
    assert_eq!(
        f.stderr,
        "error: /etc/fanout/fanout.toml:18: flow[0].interface = \"in0\": no such interface\n"
    );
    drop(bare);
    drop(lab);

    // systemd accepts the installed unit, Documentation=man:fanout(1) included.
    let f = run(&mut cmd("systemd-analyze", ["verify", UNIT_PATH]));
    assert!(
        f.status.success() && f.stderr.is_empty() && f.stdout.is_empty(),
        "systemd-analyze verify {UNIT_PATH}: {}\n{}\n{}",
        f.status,
        f.stdout,
        f.stderr
    );
    for page in PAGES {
        assert_eq!(
            ok(&mut cmd("man", ["-w", page])),
            format!("/usr/share/man/man1/{page}.1.gz\n")
        );
    }
    assert_eq!(
        ok(&mut cmd(
            "bash",
            [
                "-c",
                "source /usr/share/bash-completion/completions/fanout && complete -p fanout"
            ]
        )),
        "complete -o bashdefault -o default -o nosort -F _fanout fanout\n"
    );

    installed.purge();
    assert_eq!(dpkg_status(), None, "dpkg forgot fanout");
    for path in LEFTOVERS {
        assert!(
            std::fs::symlink_metadata(path).is_err(),
            "{path} is left after dpkg --purge fanout"
        );
    }
}
