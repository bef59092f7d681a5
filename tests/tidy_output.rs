//! What a person sees when output goes to a pipe or a file: no colour escape codes, and a
//! clean shutdown that ends without warnings. The quickstart example runs, with the logging
//! every example installs, in a child process (this test binary run again) whose output is
//! a pipe.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

/// Set in the child process: only there does the entry below run the quickstart.
const CHILD_ENV: &str = "TIDY_OUTPUT_CHILD";
const CHILD_TEST: &str = "child_process_entry_runs_the_quickstart_as_its_main_does";

/// The quickstart forms a cluster and exchanges a few messages: seconds, not minutes.
const RUN_LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process_entry_runs_the_quickstart_as_its_main_does() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    support::init_logging("warn");
    quickstart::run(3).await.unwrap();
    println!("done: the quickstart ran");
}

#[tokio::test]
async fn the_quickstart_prints_no_escape_codes_to_a_pipe_and_shuts_down_without_warnings() {
    let run = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_LIMIT, run)
        .await
        .expect("the quickstart finishes in time")
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for (name, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!text.contains('\u{1b}'), "escape codes on {name}:\n{text}");
    }
    // The shutdown runs between the last request line ("a → b: ...") and "done: ...".
    let last_request = stdout.rfind('→').expect("the requests were printed");
    let shutdown = &stdout[last_request..];
    assert!(shutdown.contains("done:"), "{stdout}");
    for level in ["WARN", "ERROR"] {
        assert!(
            !shutdown.contains(level) && !stderr.contains(level),
            "{level} during the shutdown:\n{shutdown}\n{stderr}"
        );
    }
}
