//! A separate host process working on a home, for the multi-process tests:
//!
//! - `box_worker cycles HOME LAYOUT PREFIX N`: N rounds of create / start / exec / stop / remove
//!   of box PREFIX-i, checking each step; prints one line per error and exits 1 if any.
//! - `box_worker get-or-create HOME LAYOUT NAME`: prints the id of box NAME.
//! - `box_worker start-exec HOME NAME`: starts box NAME, runs `echo started` in it, exits.
//! - `box_worker run-attached HOME LAYOUT`: creates a box with the API's defaults (not
//!   detached, removed when stopped), runs `echo started` in it, prints its id, exits.
//! - `box_worker read-slowly HOME NAME LINES OUT`: runs `seq 1 LINES; exit 7` in box NAME,
//!   prints the exec id, then appends stdout to file OUT a chunk every 100 ms (until killed).
//!
//! The shim and agent come from BOXLITE_SHIM and BOXLITE_AGENT, as the test sets them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use boxlite::{BoxCommand, BoxOptions, BoxStatus, BoxliteOptions, BoxliteRuntime, RootfsSpec};

fn runtime(home: &str) -> BoxliteRuntime {
    BoxliteRuntime::new(BoxliteOptions {
        home_dir: PathBuf::from(home),
        ..Default::default()
    })
    .unwrap_or_else(|e| fail(&format!("opening {home}: {e}")))
}

fn options(layout: &str) -> BoxOptions {
    let mut options = BoxOptions::with_rootfs(RootfsSpec::Layout {
        path: PathBuf::from(layout),
        tag: Some("busybox".into()),
    });
    options.memory_mib = Some(128);
    // Boxes outlive the workers that make them, and stay when stopped: that is what these
    // processes test.
    options.detach = true;
    options.auto_remove = false;
    // Several TCG guests share two cores here: boots take a multiple of their usual time.
    options.ready_timeout = Duration::from_secs(120);
    options
}

fn fail(message: &str) -> ! {
    eprintln!("box_worker: {message}");
    std::process::exit(1)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["cycles", home, layout, prefix, n] => {
            let n: usize = n.parse().unwrap_or_else(|_| fail("N must be a number"));
            let errors = cycles(&runtime(home), &options(layout), prefix, n).await;
            for error in &errors {
                println!("{error}");
            }
            std::process::exit(i32::from(!errors.is_empty()));
        }
        ["get-or-create", home, layout, name] => {
            match runtime(home)
                .get_or_create(options(layout), Some(name.to_string()))
                .await
            {
                Ok((b, _)) => println!("{}", b.id()),
                Err(e) => fail(&format!("get_or_create {name}: {e}")),
            }
        }
        ["run-attached", home, layout] => {
            let mut attached = options(layout);
            attached.detach = false;
            attached.auto_remove = true;
            let b = runtime(home)
                .create(attached, None)
                .await
                .unwrap_or_else(|e| fail(&format!("create: {e}")));
            let (stdout, _, _) = b
                .exec(BoxCommand::new("echo").arg("started"))
                .await
                .unwrap_or_else(|e| fail(&format!("exec: {e}")))
                .output()
                .await
                .unwrap_or_else(|e| fail(&format!("output: {e}")));
            assert_eq!(stdout, b"started\n");
            println!("{}", b.id());
        }
        ["start-exec", home, name] => {
            let b = get(&runtime(home), name).await;
            let exec = b
                .exec(BoxCommand::new("echo").arg("started"))
                .await
                .unwrap_or_else(|e| fail(&format!("exec: {e}")));
            let (stdout, _, _) = exec
                .output()
                .await
                .unwrap_or_else(|e| fail(&format!("output: {e}")));
            print!("{}", String::from_utf8_lossy(&stdout));
        }
        ["read-slowly", home, name, lines, out] => {
            read_slowly(&runtime(home), name, lines, Path::new(out)).await
        }
        _ => fail("usage: see the comment at the top of tests/src/bin/box_worker.rs"),
    }
}

async fn get(rt: &BoxliteRuntime, name: &str) -> boxlite::LiteBox {
    match rt.get(name).await {
        Ok(Some(b)) => b,
        Ok(None) => fail(&format!("no box {name}")),
        Err(e) => fail(&format!("get {name}: {e}")),
    }
}

async fn read_slowly(rt: &BoxliteRuntime, name: &str, lines: &str, out: &Path) {
    let b = get(rt, name).await;
    let exec = b
        .exec(BoxCommand::new("sh").args(["-c", &format!("seq 1 {lines}; exit 7")]))
        .await
        .unwrap_or_else(|e| fail(&format!("exec: {e}")));
    println!("{}", exec.id());
    std::io::stdout().flush().ok();
    let mut file = std::fs::File::create(out).unwrap_or_else(|e| fail(&e.to_string()));
    while let Some(chunk) = exec
        .read_stdout()
        .await
        .unwrap_or_else(|e| fail(&format!("read: {e}")))
    {
        file.write_all(&chunk)
            .unwrap_or_else(|e| fail(&e.to_string()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every way a round can go wrong, as text; an empty list is a clean run.
async fn cycles(rt: &BoxliteRuntime, options: &BoxOptions, prefix: &str, n: usize) -> Vec<String> {
    let mut errors = Vec::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        if let Err(e) = cycle(rt, options, &name).await {
            errors.push(format!("{name}: {e}"));
        }
    }
    errors
}

async fn cycle(rt: &BoxliteRuntime, options: &BoxOptions, name: &str) -> Result<(), String> {
    let b = rt
        .create(options.clone(), Some(name.to_string()))
        .await
        .map_err(|e| format!("create: {e}"))?;
    let listed = |infos: Vec<boxlite::BoxInfo>| {
        infos
            .into_iter()
            .filter(|i| i.name.as_deref() == Some(name))
            .collect::<Vec<_>>()
    };
    let rows = listed(rt.list_info().await.map_err(|e| format!("list: {e}"))?);
    if rows.len() != 1 || &rows[0].id != b.id() {
        return Err(format!("listed after create as {rows:?}"));
    }
    b.start().await.map_err(|e| format!("start: {e}"))?;
    let (stdout, stderr, result) = b
        .exec(BoxCommand::new("echo").arg(name))
        .await
        .map_err(|e| format!("exec: {e}"))?
        .output()
        .await
        .map_err(|e| format!("output: {e}"))?;
    if stdout != format!("{name}\n").as_bytes() || result.exit_code != 0 {
        return Err(format!(
            "exec gave {result:?}, stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ));
    }
    let status = b.info().status;
    if status != BoxStatus::Running {
        return Err(format!("{status} after exec"));
    }
    b.stop().await.map_err(|e| format!("stop: {e}"))?;
    let status = b.info().status;
    if status != BoxStatus::Stopped {
        return Err(format!("{status} after stop"));
    }
    rt.remove(name, false)
        .await
        .map_err(|e| format!("remove: {e}"))?;
    let rows = listed(rt.list_info().await.map_err(|e| format!("list: {e}"))?);
    if !rows.is_empty() {
        return Err(format!("listed after remove as {rows:?}"));
    }
    Ok(())
}
