//! The box types on real VMs: `CodeBox` on the python image and `BrowserBox` on the browser
//! image that `scripts/build-images.sh` builds (one box each for all their assertions: a TCG
//! boot of them costs seconds), and `InteractiveBox` on the busybox test image.

use std::time::Duration;

use boxlite::{
    BoxCommand, BoxOptions, BrowserBox, CodeBox, ComputerBox, ErrorKind, InteractiveBox,
    NetworkMode, ScrollDirection,
};
use boxlite_tests::{
    image_layout, layout_box_options, python_layout, test_runtime, TestHome, READY_TIMEOUT,
};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_computer_box_is_a_desktop_operated_from_the_host() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let mut options = ComputerBox::default_options();
    options.rootfs = boxlite::RootfsSpec::Layout {
        path: image_layout("desktop").to_path_buf(),
        tag: Some("desktop".into()),
    };
    options.ready_timeout = READY_TIMEOUT;
    options.network = NetworkMode::None;
    let computer = ComputerBox::with_options(&rt, options, (800, 600))
        .await
        .unwrap();
    assert_eq!(computer.get_screen_size().await.unwrap(), (800, 600));
    let blank = computer.screenshot().await.unwrap();
    assert_eq!((blank.width, blank.height), (800, 600));

    // A window: an xterm on the desktop shows up in the next screenshots.
    let term = computer
        .litebox()
        .exec(
            BoxCommand::new("xterm")
                .args(["-e", "sh"])
                .env("DISPLAY", boxlite::box_types::computer_box::DISPLAY),
        )
        .await
        .unwrap();
    term.send_output_to_log().await.unwrap();
    // (Each look is a screenshot taken in the box: the loop paces itself.)
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let shown = loop {
        let shot = computer.screenshot().await.unwrap();
        if shot.png != blank.png {
            break shot;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the xterm never appeared"
        );
    };

    // The mouse: moves, clicks of every kind, a drag, the wheel.
    computer.mouse_move(100, 120).await.unwrap();
    assert_eq!(computer.cursor_position().await.unwrap(), (100, 120));
    computer.left_click().await.unwrap();
    computer.right_click().await.unwrap();
    computer.middle_click().await.unwrap();
    computer.double_click().await.unwrap();
    computer.triple_click().await.unwrap();
    computer
        .left_click_drag((10, 10), (200, 150))
        .await
        .unwrap();
    assert_eq!(computer.cursor_position().await.unwrap(), (200, 150));
    computer
        .scroll(300, 300, ScrollDirection::Down, 3)
        .await
        .unwrap();
    assert_eq!(computer.cursor_position().await.unwrap(), (300, 300));

    // The keyboard: what is typed reaches the focused window's shell.
    // ctrl+u: the terminal erases whatever the clicks may have put on the line.
    computer.key("ctrl+u").await.unwrap();
    computer
        .r#type("echo typed-$((6 * 7)) > /tmp/typed")
        .await
        .unwrap();
    computer.key("Return").await.unwrap();
    boxlite_tests::wait_until(Duration::from_secs(120), "the typed line ran", || {
        let litebox = computer.litebox();
        async move { boxlite_tests::sh(litebox, "cat /tmp/typed").await.1 == "typed-42\n" }
    })
    .await;
    assert_ne!(computer.screenshot().await.unwrap().png, shown.png);

    // Bad input is refused with the reason, and the desktop stays usable.
    let err = computer.mouse_move(800, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(
        err.to_string().contains("outside the 800x600 screen"),
        "{err}"
    );
    assert!(computer.key("").await.is_err());
    assert!(computer.key("--help").await.is_err());
    assert!(computer.scroll(1, 1, ScrollDirection::Up, 0).await.is_err());
    assert!(computer.left_click_drag((0, 0), (0, 9999)).await.is_err());
    computer.mouse_move(0, 0).await.unwrap();
    assert_eq!(computer.cursor_position().await.unwrap(), (0, 0));
    computer.remove().await.unwrap();
}

/// A minimal CDP client: one WebSocket to the browser, flat sessions.
struct Cdp {
    socket: tungstenite::WebSocket<std::net::TcpStream>,
    next_id: u64,
}

impl Cdp {
    fn connect(endpoint: &str) -> Self {
        let address = endpoint
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("a ws:// URL");
        let stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let (socket, _) = tungstenite::client(endpoint, stream).unwrap();
        Self { socket, next_id: 1 }
    }

    /// Sends `method` (to `session` if given) and returns its result, skipping events.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let reply = self.socket.read().unwrap();
            let tungstenite::Message::Text(text) = reply else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
            if reply["id"] == id {
                assert!(reply.get("error").is_none(), "{method}: {reply}");
                return reply["result"].clone();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_box_is_driven_over_cdp_from_the_host() {
    let home = TestHome::new();
    let rt = test_runtime!(home.path());
    let mut options = BrowserBox::default_options();
    options.rootfs = boxlite::RootfsSpec::Layout {
        path: image_layout("browser").to_path_buf(),
        tag: Some("browser".into()),
    };
    options.ready_timeout = READY_TIMEOUT;
    let mut browser = BrowserBox::with_options(&rt, options).await.unwrap();
    let endpoint = browser.endpoint().to_string();
    assert!(endpoint.starts_with("ws://127.0.0.1:"), "{endpoint}");
    assert!(browser.http_endpoint().starts_with("http://127.0.0.1:"));

    // A page from the host's CDP client: load it, read its title, take a screenshot.
    let (title, png) = tokio::task::spawn_blocking(move || {
        let mut cdp = Cdp::connect(&endpoint);
        let page = "data:text/html,<title>Hello from the box</title><h1>boxlite</h1>";
        let target = cdp.call(
            None,
            "Target.createTarget",
            serde_json::json!({ "url": page }),
        );
        let attached = cdp.call(
            None,
            "Target.attachToTarget",
            serde_json::json!({ "targetId": target["targetId"], "flatten": true }),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        // The new target shows about:blank first: wait for the data: page itself, loaded.
        // Under TCG, Chromium's network service can be restarted by its own watchdog while
        // the first navigation is under way, and that navigation then never commits: after
        // NAVIGATION_RETRY without the page, navigate again.
        const NAVIGATION_RETRY: Duration = Duration::from_secs(30);
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        let mut navigated = std::time::Instant::now();
        let title = loop {
            let evaluated = cdp.call(
                Some(&session),
                "Runtime.evaluate",
                serde_json::json!({
                    "expression": "location.protocol + '|' + document.readyState + '|' + document.title"
                }),
            );
            let value = evaluated["result"]["value"].as_str().unwrap_or("").to_string();
            if let Some(title) = value.strip_prefix("data:|complete|") {
                break title.to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page never loaded; the target shows {value:?}"
            );
            if navigated.elapsed() > NAVIGATION_RETRY {
                cdp.call(Some(&session), "Page.navigate", serde_json::json!({ "url": page }));
                navigated = std::time::Instant::now();
            }
            // Polling leaves the one vCPU to the renderer between questions.
            std::thread::sleep(Duration::from_millis(100));
        };
        let shot = cdp.call(
            Some(&session),
            "Page.captureScreenshot",
            serde_json::json!({ "format": "png" }),
        );
        (title, base64_decode(shot["data"].as_str().unwrap()))
    })
    .await
    .unwrap();
    assert_eq!(title, "Hello from the box");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // A browser that dies: the box stays usable, says so, and starts a new browser.
    assert!(browser.is_running().await);
    let (code, _) = boxlite_tests::sh(browser.litebox(), "pkill -9 chromium; true").await;
    assert_eq!(code, 0);
    boxlite_tests::wait_until(Duration::from_secs(60), "the killed browser gone", || {
        let browser = &browser;
        async move { !browser.is_running().await }
    })
    .await;
    let (code, out) = boxlite_tests::sh(browser.litebox(), "echo still-here").await;
    assert_eq!((code, out.as_str()), (0, "still-here\n"));
    let old_endpoint = browser.endpoint().to_string();
    browser.restart().await.unwrap();
    assert!(browser.is_running().await);
    assert_ne!(
        browser.endpoint(),
        old_endpoint,
        "a new browser has a new id"
    );
    let endpoint = browser.endpoint().to_string();
    let product = tokio::task::spawn_blocking(move || {
        Cdp::connect(&endpoint).call(None, "Browser.getVersion", serde_json::json!({}))["product"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    })
    .await
    .unwrap();
    assert!(product.contains("Chrome/"), "{product}");
    browser.remove().await.unwrap();
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
