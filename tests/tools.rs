//! The lab tools' command lines: bad arguments are refused with exit code 2
//! and a message naming the argument, before any socket is opened. (Their
//! traffic is tested inside the lab, in tests/lab.rs.)

mod common;

use common::fanout;

#[test]
fn gen_refuses_bad_arguments() {
    let base = ["lab", "gen", "--dest", "239.10.0.1:5000", "--count", "1"];
    for (extra, needle) in [
        (&["--sizes", "23"][..], "--sizes: 23"),
        (&["--sizes", "65508"][..], "--sizes: 65508"),
        (&["--rate", "0"][..], "--rate: 0"),
        (&["--max-seconds", "0"][..], "--max-seconds"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, stderr) = fanout(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (code, stderr) = fanout(&["lab", "gen", "--dest", "239.10.0.1:0", "--count", "1"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("port 0"), "{stderr}");
    let (code, _) = fanout(&["lab", "gen", "--dest", "nonsense", "--count", "1"]);
    assert_eq!(code, Some(2));
}

#[test]
fn sink_refuses_bad_arguments() {
    let report = std::env::temp_dir().join(format!("fo-tools-{}.json", std::process::id()));
    let report = report.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["--listen", "239.1.1.1:5000"],
            "a multicast address needs --join 239.1.1.1@IF",
        ),
        (
            vec!["--listen", "10.0.0.1:5000", "--join", "239.1.1.1@lo"],
            "no --listen address on 239.1.1.1",
        ),
        (
            vec!["--listen", "239.1.1.1:5000", "--join", "239.1.1.1"],
            "expected GROUP@IF",
        ),
        (
            vec!["--listen", "10.0.0.1:5000", "--join", "10.0.0.1@lo"],
            "not a multicast group",
        ),
        (
            vec![
                "--listen",
                "239.1.1.1:5000",
                "--join",
                "239.1.1.1@fo-nosuchif",
            ],
            "no interface \"fo-nosuchif\"",
        ),
        (
            vec!["--listen", "10.0.0.1:5000", "--timeout=-1"],
            "--timeout",
        ),
    ] {
        let mut all = vec!["lab", "sink", "--expect", "1", "--report", report];
        all.extend(args);
        let (code, stderr) = fanout(&all);
        assert_eq!(code, Some(2), "{all:?}: {stderr}");
        assert!(stderr.contains(needle), "{all:?}: {stderr}");
    }
    assert!(
        !std::path::Path::new(report).exists(),
        "no report for refused arguments"
    );
}
