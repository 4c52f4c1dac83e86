//! The box types on real VMs: `CodeBox` on the python image `scripts/build-images.sh`
//! builds (one box for all its assertions: a TCG boot of it costs seconds), and
//! `InteractiveBox` on the busybox test image.

use std::time::Duration;

use boxlite::{BoxCommand, BoxOptions, CodeBox, ErrorKind, InteractiveBox, NetworkMode};
use boxlite_tests::{layout_box_options, python_layout, test_runtime, TestHome, READY_TIMEOUT};

fn code_box_options() -> BoxOptions {
    let mut options = CodeBox::default_options();
    options.rootfs = boxlite::RootfsSpec::Layout {
        path: python_layout().to_path_buf(),
        tag: Some("python".into()),
    };
    options.ready_timeout = READY_TIMEOUT;
    // No network: pip's failure to reach an index must be a clear error.
    options.network = NetworkMode::None;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_box_keeps_its_interpreter_and_gives_rich_results() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let code = CodeBox::with_options(&rt, code_box_options())
        .await
        .unwrap();

    // The last expression is the result; state persists between runs.
    let first = code.run("x = 41\nx + 1").await.unwrap();
    assert!(first.success(), "{first:?}");
    assert_eq!(first.text(), Some("42"));
    assert_eq!(code.run("x").await.unwrap().text(), Some("41"));
    assert_eq!(code.run("y = 1").await.unwrap().result, None);

    // Output of print, of the C level and of child processes; stderr apart.
    let printed = code
        .run("import os, sys\nprint('out')\nprint('err', file=sys.stderr)\nos.system('echo child')")
        .await
        .unwrap();
    assert_eq!(printed.stdout, "out\nchild\n");
    assert_eq!(printed.stderr, "err\n");
    assert_eq!(printed.text(), Some("0"));

    // Exceptions and syntax errors: name, value and a traceback from the code's own lines.
    let failed = code.run("def f():\n    return 1/0\nf()").await.unwrap();
    let error = failed.error.expect("an error");
    assert_eq!(error.name, "ZeroDivisionError");
    assert_eq!(error.value, "division by zero");
    assert!(
        error.traceback.iter().any(|l| l.contains("<cell>")),
        "{error:?}"
    );
    assert!(
        !error.traceback.iter().any(|l| l.contains("codebox")),
        "{error:?}"
    );
    let syntax = code.run("def f(:").await.unwrap().error.expect("an error");
    assert_eq!(syntax.name, "SyntaxError");
    assert_eq!(code.run("x").await.unwrap().text(), Some("41"));

    // Rich results: pandas as HTML, a matplotlib figure as PNG.
    let frame = code
        .run("import pandas as pd\npd.DataFrame({'a': [1, 2]})")
        .await
        .unwrap();
    let bundle = frame.result.expect("a result");
    assert!(bundle["text/html"].contains("<table"), "{bundle:?}");
    let plot = code
        .run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nNone")
        .await
        .unwrap();
    assert!(plot.success(), "{plot:?}");
    assert_eq!(plot.display.len(), 1, "{plot:?}");
    let png = base64_decode(&plot.display[0]["image/png"]);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // A runaway run is interrupted; the interpreter keeps its state.
    let endless = code
        .run_with_timeout("while True:\n    pass", Duration::from_secs(2))
        .await
        .unwrap();
    let error = endless.error.expect("interrupted");
    assert_eq!(error.name, "Timeout");
    assert!(error.value.contains("kept its state"), "{error:?}");
    assert_eq!(code.run("x").await.unwrap().text(), Some("41"));
    // One that ignores the interrupt loses its interpreter; the next run gets a new one.
    let stubborn = code
        .run_with_timeout(
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(
        stubborn.error.expect("killed").value.contains("killed"),
        "the interpreter was not replaced"
    );
    let fresh = code.run("x").await.unwrap();
    assert_eq!(fresh.error.expect("x is gone").name, "NameError");

    // A script from the host; packages need a network this box does not have.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), "z = 6 * 7\nprint(z)\n").unwrap();
    let ran = code.run_script(script.path()).await.unwrap();
    assert_eq!(ran.stdout, "42\n");
    assert!(code.run_script("/no/such/script.py").await.is_err());
    let err = code
        .install_package("boxlite-absent-package")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Execution, "{err}");
    assert!(
        err.to_string().contains("cannot reach a package index"),
        "{err}"
    );
    let err = code.install_package("-r/etc/passwd").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");

    code.remove().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_box_is_a_shell_on_a_terminal() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let mut options = layout_box_options("busybox");
    options.detach = false;
    options.auto_remove = true;
    let mut shell = InteractiveBox::new(&rt, options).await.unwrap();
    let wait = Duration::from_secs(60);

    // What is typed is echoed by the terminal; the command's output follows.
    shell.write_str("echo hi-$((1 + 2))\n").await.unwrap();
    let shown = shell.read_until("hi-3", wait).await.unwrap();
    assert!(shown.contains("echo hi-$((1 + 2))"), "{shown:?}");
    // A terminal: isatty, and the size it is given.
    shell
        .write_str("[ -t 0 ] && echo is-a-tty\n")
        .await
        .unwrap();
    shell.read_until("is-a-tty\r\n", wait).await.unwrap();
    shell.resize(40, 123).await.unwrap();
    shell.write_str("stty size\n").await.unwrap();
    shell.read_until("40 123", wait).await.unwrap();
    assert!(shell.resize(0, 80).await.is_err());
    // A pattern that never comes: a clear error within the deadline, the shell still usable.
    let err = shell
        .read_until("never-printed", Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("did not appear"), "{err}");
    shell.write_str("exit 5\n").await.unwrap();
    assert_eq!(shell.wait().await.unwrap().exit_code, 5);
    shell.remove().await.unwrap();

    // Another shell program, on the same kind of box.
    let mut options = layout_box_options("busybox");
    options.detach = false;
    options.auto_remove = true;
    let mut ash = InteractiveBox::with_shell(&rt, options, BoxCommand::new("ash"))
        .await
        .unwrap();
    ash.write_str("exit 0\n").await.unwrap();
    assert_eq!(ash.wait().await.unwrap().exit_code, 0);
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut bits = 0u32;
    let mut count = 0;
    for &c in text.as_bytes().iter().filter(|&&c| c != b'=') {
        let value = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}
