//! Every function of libboxlite. Each checks its pointers (NULL or invalid UTF-8 is
//! `InvalidArgument`, never a crash), runs the core's future on the library's I/O threads
//! while the calling thread waits, never lets a panic unwind into C (it becomes `Internal`),
//! and reports failures through the caller's `CBoxliteError`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use boxlite_core::{BoxCommand, BoxliteOptions, BoxliteRuntime, LiteBox};

use crate::error::{c_string, BoxliteErrorCode, CBoxliteError, Failure};
use crate::options;

/// A home and its boxes. May be shared by threads.
pub struct CBoxliteRuntime {
    runtime: BoxliteRuntime,
}

/// One box. Belongs to one thread at a time.
pub struct CBoxHandle {
    litebox: LiteBox,
}

/// A box of the simple API: made started, stopped and removed by `boxlite_simple_free`.
pub struct CBoxliteSimple {
    runtime: BoxliteRuntime,
    litebox: LiteBox,
}

/// A command's whole output and exit code (`boxlite_simple_run`), freed with
/// `boxlite_result_free`.
#[repr(C)]
pub struct CBoxliteExecResult {
    /// The exit code; -1 when a signal ended the command.
    pub exit_code: c_int,
    pub stdout_text: *mut c_char,
    pub stderr_text: *mut c_char,
}

/// Receives a command's output as it comes: `text` is a chunk (NUL-terminated, valid during
/// the call only; NUL bytes of the output arrive as U+FFFD), `is_stderr` 0 for stdout and 1
/// for stderr, `user_data` as given to `boxlite_execute`.
pub type BoxliteOutputCallback =
    Option<unsafe extern "C" fn(text: *const c_char, is_stderr: c_int, user_data: *mut c_void)>;

/// The library's I/O threads, made on first use.
fn tokio() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("libboxlite")
            .enable_all()
            .build()
            .expect("starting libboxlite's I/O threads")
    })
}

/// Runs `body`, turning a failure or a panic into the code returned and `out_error`.
fn call(
    out_error: *mut CBoxliteError,
    body: impl FnOnce() -> Result<(), Failure>,
) -> BoxliteErrorCode {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return BoxliteErrorCode::Ok,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Failure::new(
                BoxliteErrorCode::Internal,
                format!("internal error: {what}"),
            )
        }
    };
    if !out_error.is_null() {
        // SAFETY: a non-NULL `out_error` points to the caller's CBoxliteError (documented);
        // a message left in it from before is the caller's to have freed.
        unsafe {
            (*out_error).code = failure.code;
            (*out_error).message = c_string(&failure.message).into_raw();
        }
    }
    failure.code
}

/// A `&str` from a C string argument named `what`.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that lives for the call.
unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated, by this function's contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Failure::invalid(format!("{what} is not UTF-8")))
}

/// `&mut *ptr`, or InvalidArgument naming `what` when NULL.
///
/// # Safety
/// `ptr` is NULL or points to a live `T` that nothing else uses during the call.
unsafe fn object<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: by this function's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::invalid(format!("{what} is NULL")))
}

/// Checks an output pointer argument.
fn out<T>(ptr: *mut T, what: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    Ok(())
}

/// Hands `value` to the caller through `out`.
///
/// # Safety
/// `out` was checked non-NULL and points to writable memory of the caller.
unsafe fn give<T>(out: *mut T, value: T) {
    // SAFETY: by this function's contract.
    unsafe { out.write(value) };
}

fn json_out(out_json: *mut *mut c_char, value: &serde_json::Value) {
    // SAFETY: callers check `out_json` first.
    unsafe { give(out_json, c_string(&value.to_string()).into_raw()) };
}

/// The library's version (a static string: do not free it).
#[no_mangle]
pub extern "C" fn boxlite_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Opens the home `home_dir` (NULL: `BOXLITE_HOME`, else `~/.boxlite`) with the registries of
/// `registries_json` for unqualified image names (a JSON array of hosts; NULL: docker.io).
///
/// # Safety
/// Strings are NULL or NUL-terminated; `out_runtime` points to writable memory.
#[no_mangle]
pub unsafe extern "C" fn boxlite_runtime_new(
    home_dir: *const c_char,
    registries_json: *const c_char,
    out_runtime: *mut *mut CBoxliteRuntime,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        out(out_runtime, "out_runtime")?;
        let mut options = BoxliteOptions::default();
        if !home_dir.is_null() {
            // SAFETY: non-NULL strings are NUL-terminated, by this function's contract.
            options.home_dir = unsafe { text(home_dir, "home_dir") }?.into();
        }
        if !registries_json.is_null() {
            // SAFETY: as above.
            let list = unsafe { text(registries_json, "registries_json") }?;
            options.image_registries = serde_json::from_str(list).map_err(|e| {
                Failure::invalid(format!("registries_json (a JSON array of hosts): {e}"))
            })?;
        }
        let _context = tokio().enter();
        let runtime = BoxliteRuntime::new(options)?;
        // SAFETY: checked above.
        unsafe {
            give(
                out_runtime,
                Box::into_raw(Box::new(CBoxliteRuntime { runtime })),
            )
        };
        Ok(())
    })
}

/// Stops every running box of the home, each given `timeout` seconds (0: 10; -1: as long as
/// it takes) before its VM is killed.
///
/// # Safety
/// `runtime` is NULL or from `boxlite_runtime_new` and not freed.
#[no_mangle]
pub unsafe extern "C" fn boxlite_runtime_shutdown(
    runtime: *mut CBoxliteRuntime,
    timeout: c_int,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        let timeout = (timeout != 0).then_some(timeout);
        Ok(tokio().block_on(runtime.shutdown(timeout))?)
    })
}

/// Frees a runtime (its boxes run on: they belong to the home). NULL is fine.
///
/// # Safety
/// `runtime` is NULL or from `boxlite_runtime_new`, freed once.
#[no_mangle]
pub unsafe extern "C" fn boxlite_runtime_free(runtime: *mut CBoxliteRuntime) {
    if !runtime.is_null() {
        // SAFETY: made by Box::into_raw in boxlite_runtime_new, freed once (contract).
        drop(unsafe { Box::from_raw(runtime) });
    }
}

/// Creates a box from `options_json` (see the header's schema; `{}` takes every default) and
/// starts it.
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `options_json` NUL-terminated; `out_box` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_create_box(
    runtime: *mut CBoxliteRuntime,
    options_json: *const c_char,
    out_box: *mut *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        // SAFETY: as above.
        let options = options::box_options(unsafe { text(options_json, "options_json") }?)?;
        out(out_box, "out_box")?;
        let litebox = tokio().block_on(async {
            let litebox = runtime.create(options, None).await?;
            litebox.start().await?;
            Ok::<_, boxlite_core::BoxliteError>(litebox)
        })?;
        // SAFETY: checked above.
        unsafe { give(out_box, Box::into_raw(Box::new(CBoxHandle { litebox }))) };
        Ok(())
    })
}

/// A handle on an existing box by id or name (NotFound when there is none).
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `id_or_name` NUL-terminated; `out_handle` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_get(
    runtime: *mut CBoxliteRuntime,
    id_or_name: *const c_char,
    out_handle: *mut *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        // SAFETY: as above.
        let id = unsafe { text(id_or_name, "id_or_name") }?;
        out(out_handle, "out_handle")?;
        let litebox = tokio()
            .block_on(runtime.get(id))?
            .ok_or_else(|| Failure::new(BoxliteErrorCode::NotFound, format!("no box {id:?}")))?;
        // SAFETY: checked above.
        unsafe { give(out_handle, Box::into_raw(Box::new(CBoxHandle { litebox }))) };
        Ok(())
    })
}

/// Starts a stopped box (again).
///
/// # Safety
/// `handle` from `boxlite_create_box` or `boxlite_get`, not freed.
#[no_mangle]
pub unsafe extern "C" fn boxlite_start_box(
    handle: *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        Ok(tokio().block_on(litebox.start())?)
    })
}

/// Stops a box (removed too when its options say `auto_remove`) and frees the handle, also
/// when stopping fails: do not use the handle afterwards.
///
/// # Safety
/// `handle` from `boxlite_create_box` or `boxlite_get`, not freed; it is freed here.
#[no_mangle]
pub unsafe extern "C" fn boxlite_stop_box(
    handle: *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        if handle.is_null() {
            return Err(Failure::invalid("handle is NULL"));
        }
        // SAFETY: made by Box::into_raw, consumed once (contract).
        let handle = unsafe { Box::from_raw(handle) };
        Ok(tokio().block_on(handle.litebox.stop())?)
    })
}

/// Frees a box handle without stopping the box. NULL is fine.
///
/// # Safety
/// `handle` is NULL or from `boxlite_create_box`/`boxlite_get`, freed once.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_free(handle: *mut CBoxHandle) {
    if !handle.is_null() {
        // SAFETY: made by Box::into_raw, freed once (contract).
        drop(unsafe { Box::from_raw(handle) });
    }
}

/// Removes a box by id or name; a running one only with `force` non-zero (its VM is killed).
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `id_or_name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn boxlite_remove(
    runtime: *mut CBoxliteRuntime,
    id_or_name: *const c_char,
    force: c_int,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        // SAFETY: as above.
        let id = unsafe { text(id_or_name, "id_or_name") }?;
        Ok(tokio().block_on(runtime.remove(id, force != 0))?)
    })
}

/// The box's id (free it with `boxlite_free_string`); NULL for a NULL handle.
///
/// # Safety
/// `handle` is NULL or a live box handle.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_id(handle: *mut CBoxHandle) -> *mut c_char {
    // SAFETY: by this function's contract.
    match unsafe { handle.as_ref() } {
        Some(handle) => c_string(handle.litebox.id()).into_raw(),
        None => std::ptr::null_mut(),
    }
}

/// Runs `command` with the arguments of `args_json` (a JSON array of strings; NULL: none) in
/// the box, hands its output to `callback` (may be NULL) as it comes, and gives its exit
/// code (-1 when a signal ended it) through `out_exit_code`.
///
/// # Safety
/// `handle` a live box handle; strings NUL-terminated; `callback` NULL or callable with
/// `user_data`; `out_exit_code` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_execute(
    handle: *mut CBoxHandle,
    command: *const c_char,
    args_json: *const c_char,
    callback: BoxliteOutputCallback,
    user_data: *mut c_void,
    out_exit_code: *mut c_int,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        // SAFETY: as above.
        let program = unsafe { text(command, "command") }?;
        let args: Vec<String> = if args_json.is_null() {
            Vec::new()
        } else {
            // SAFETY: as above.
            serde_json::from_str(unsafe { text(args_json, "args_json") }?).map_err(|e| {
                Failure::invalid(format!("args_json (a JSON array of strings): {e}"))
            })?
        };
        out(out_exit_code, "out_exit_code")?;
        let deliver = |chunk: &[u8], is_stderr: c_int| {
            if let Some(callback) = callback {
                let text = c_string(&String::from_utf8_lossy(chunk));
                // SAFETY: the caller's callback, called on its own thread (block_on runs
                // this future here) with a string valid during the call.
                unsafe { callback(text.as_ptr(), is_stderr, user_data) };
            }
        };
        let exit_code = tokio().block_on(async {
            let execution = litebox.exec(BoxCommand::new(program).args(args)).await?;
            let (mut stdout_open, mut stderr_open) = (true, true);
            while stdout_open || stderr_open {
                tokio::select! {
                    chunk = execution.read_stdout(), if stdout_open => match chunk? {
                        Some(data) => deliver(&data, 0),
                        None => stdout_open = false,
                    },
                    chunk = execution.read_stderr(), if stderr_open => match chunk? {
                        Some(data) => deliver(&data, 1),
                        None => stderr_open = false,
                    },
                }
            }
            let mut execution = execution;
            Ok::<_, boxlite_core::BoxliteError>(execution.wait().await?.exit_code)
        })?;
        // SAFETY: checked above.
        unsafe { give(out_exit_code, exit_code) };
        Ok(())
    })
}

/// Stops the box's vCPUs; its processes and memory are kept. Commands are refused
/// (InvalidState) until `boxlite_resume_box`; stopping works.
///
/// # Safety
/// `handle` a live box handle.
#[no_mangle]
pub unsafe extern "C" fn boxlite_pause_box(
    handle: *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        Ok(tokio().block_on(litebox.pause())?)
    })
}

/// Runs a paused box again, from where it stopped.
///
/// # Safety
/// `handle` a live box handle.
#[no_mangle]
pub unsafe extern "C" fn boxlite_resume_box(
    handle: *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        Ok(tokio().block_on(litebox.resume())?)
    })
}

/// Saves the running or paused box whole (memory, devices, disk) as snapshot `name` of the
/// home, and gives the snapshot's info as JSON (free with `boxlite_free_string`).
///
/// # Safety
/// `handle` a live box handle; `name` NUL-terminated; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_snapshot_box(
    handle: *mut CBoxHandle,
    name: *const c_char,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        // SAFETY: as above.
        let name = unsafe { text(name, "name") }?;
        out(out_json, "out_json")?;
        let info = tokio().block_on(litebox.snapshot(name))?;
        json_out(out_json, &options::snapshot_info(&info));
        Ok(())
    })
}

/// The snapshots taken of this box, a JSON array, oldest first (free with
/// `boxlite_free_string`).
///
/// # Safety
/// `handle` a live box handle; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_snapshots(
    handle: *mut CBoxHandle,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = &unsafe { object(handle, "handle") }?.litebox;
        out(out_json, "out_json")?;
        json_out(out_json, &options::snapshot_list(&litebox.snapshots()?));
        Ok(())
    })
}

/// Puts the box back to its own snapshot `name`: what happened since is lost, and the box
/// runs on from that moment (its processes still running). The snapshot is kept.
///
/// # Safety
/// `handle` a live box handle; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn boxlite_restore_box(
    handle: *mut CBoxHandle,
    name: *const c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        // SAFETY: as above.
        let name = unsafe { text(name, "name") }?;
        Ok(tokio().block_on(litebox.restore(name))?)
    })
}

/// A second box named `name` that continues from this moment of this one (its processes
/// still running, its files and memory identical), independent afterwards; its handle goes
/// to `out_box` (free with `boxlite_box_free` or `boxlite_stop_box`).
///
/// # Safety
/// `handle` a live box handle; `name` NUL-terminated; `out_box` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_fork_box(
    handle: *mut CBoxHandle,
    name: *const c_char,
    out_box: *mut *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        // SAFETY: as above.
        let name = unsafe { text(name, "name") }?;
        out(out_box, "out_box")?;
        let forked = tokio().block_on(litebox.fork(name))?;
        // SAFETY: checked above.
        unsafe {
            give(
                out_box,
                Box::into_raw(Box::new(CBoxHandle { litebox: forked })),
            )
        };
        Ok(())
    })
}

/// How many standbys (warm VMs kept with `BOXLITE_STANDBY=N`) are ready for boxes' first
/// starts, into `out_count`.
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `out_count` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_standbys_ready(
    runtime: *mut CBoxliteRuntime,
    out_count: *mut c_int,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = &unsafe { object(runtime, "runtime") }?.runtime;
        out(out_count, "out_count")?;
        let count = runtime.standbys_ready().try_into().unwrap_or(c_int::MAX);
        // SAFETY: checked above, writable by this function's contract.
        unsafe { give(out_count, count) };
        Ok(())
    })
}

/// Powers every standby of the home off; how many were running goes to `out_count` (may be
/// NULL).
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `out_count` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_retire_standbys(
    runtime: *mut CBoxliteRuntime,
    out_count: *mut c_int,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = &unsafe { object(runtime, "runtime") }?.runtime;
        let retired = tokio().block_on(runtime.retire_standbys());
        if !out_count.is_null() {
            // SAFETY: non-null, and writable by this function's contract.
            unsafe { give(out_count, retired.try_into().unwrap_or(c_int::MAX)) };
        }
        Ok(())
    })
}

/// Every snapshot of the home, a JSON array, oldest first (free with `boxlite_free_string`).
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_list_snapshots(
    runtime: *mut CBoxliteRuntime,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = &unsafe { object(runtime, "runtime") }?.runtime;
        out(out_json, "out_json")?;
        json_out(
            out_json,
            &options::snapshot_list(&runtime.list_snapshots()?),
        );
        Ok(())
    })
}

/// Removes snapshot `name` of the home; boxes made from it are not affected.
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `name` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn boxlite_remove_snapshot(
    runtime: *mut CBoxliteRuntime,
    name: *const c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = &unsafe { object(runtime, "runtime") }?.runtime;
        // SAFETY: as above.
        let name = unsafe { text(name, "name") }?;
        Ok(runtime.remove_snapshot(name)?)
    })
}

/// A new box from snapshot `snapshot`, started: it continues from the moment the snapshot
/// was taken, with its own name (`name`, or NULL for none) and network, and no host port
/// forwards. Its handle goes to `out_box`.
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `snapshot` NUL-terminated; `name` NULL or
/// NUL-terminated; `out_box` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_create_from_snapshot(
    runtime: *mut CBoxliteRuntime,
    snapshot: *const c_char,
    name: *const c_char,
    out_box: *mut *mut CBoxHandle,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        // SAFETY: as above.
        let snapshot = unsafe { text(snapshot, "snapshot") }?;
        let name = if name.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { text(name, "name") }?.to_string())
        };
        out(out_box, "out_box")?;
        let litebox = tokio().block_on(runtime.create_from_snapshot(snapshot, name))?;
        // SAFETY: checked above.
        unsafe { give(out_box, Box::into_raw(Box::new(CBoxHandle { litebox }))) };
        Ok(())
    })
}

/// Every box of the home as a JSON array of box infos (free with `boxlite_free_string`).
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_list_info(
    runtime: *mut CBoxliteRuntime,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        out(out_json, "out_json")?;
        let infos = tokio().block_on(runtime.list_info())?;
        let list: Vec<_> = infos.iter().map(options::box_info).collect();
        json_out(out_json, &serde_json::Value::Array(list));
        Ok(())
    })
}

/// One box's info as JSON, by id or name (NotFound when there is none).
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `id_or_name` NUL-terminated; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_get_info(
    runtime: *mut CBoxliteRuntime,
    id_or_name: *const c_char,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        // SAFETY: as above.
        let id = unsafe { text(id_or_name, "id_or_name") }?;
        out(out_json, "out_json")?;
        let info = tokio()
            .block_on(runtime.get_info(id))?
            .ok_or_else(|| Failure::new(BoxliteErrorCode::NotFound, format!("no box {id:?}")))?;
        json_out(out_json, &options::box_info(&info));
        Ok(())
    })
}

/// The box's info as JSON.
///
/// # Safety
/// `handle` a live box handle; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_info(
    handle: *mut CBoxHandle,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = &unsafe { object(handle, "handle") }?.litebox;
        out(out_json, "out_json")?;
        json_out(out_json, &options::box_info(&litebox.info()));
        Ok(())
    })
}

/// The runtime's counters and the home's running boxes as JSON.
///
/// # Safety
/// `runtime` from `boxlite_runtime_new`; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_runtime_metrics(
    runtime: *mut CBoxliteRuntime,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let runtime = unsafe { object(runtime, "runtime") }?.runtime.clone();
        out(out_json, "out_json")?;
        let metrics = tokio().block_on(runtime.metrics());
        json_out(out_json, &options::runtime_metrics(&metrics));
        Ok(())
    })
}

/// The box's figures as JSON (live ones null while it is not running).
///
/// # Safety
/// `handle` a live box handle; `out_json` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_box_metrics(
    handle: *mut CBoxHandle,
    out_json: *mut *mut c_char,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(handle, "handle") }?.litebox.clone();
        out(out_json, "out_json")?;
        let metrics = tokio().block_on(litebox.metrics())?;
        json_out(out_json, &options::box_metrics(&metrics));
        Ok(())
    })
}

/// A started box of `image` (`cpus`/`memory_mib` 0: the defaults) in the default home.
///
/// # Safety
/// `image` NUL-terminated; `out_box` writable.
#[no_mangle]
pub unsafe extern "C" fn boxlite_simple_new(
    image: *const c_char,
    cpus: c_int,
    memory_mib: c_int,
    out_box: *mut *mut CBoxliteSimple,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let image = unsafe { text(image, "image") }?;
        out(out_box, "out_box")?;
        let number = |value: c_int, what: &str| -> Result<Option<u32>, Failure> {
            match value {
                0 => Ok(None),
                v if v > 0 => Ok(Some(v as u32)),
                v => Err(Failure::invalid(format!(
                    "{what} {v}: 0 for the default, or more"
                ))),
            }
        };
        let mut options =
            boxlite_core::BoxOptions::with_rootfs(boxlite_core::RootfsSpec::from_reference(image));
        options.cpus = number(cpus, "cpus")?
            .map(|c| u8::try_from(c).map_err(|_| Failure::invalid(format!("cpus {c}"))))
            .transpose()?;
        options.memory_mib = number(memory_mib, "memory_mib")?;
        let _context = tokio().enter();
        let runtime = BoxliteRuntime::new(BoxliteOptions::default())?;
        let litebox = tokio().block_on(async {
            let litebox = runtime.create(options, None).await?;
            litebox.start().await?;
            Ok::<_, boxlite_core::BoxliteError>(litebox)
        })?;
        // SAFETY: checked above.
        unsafe {
            give(
                out_box,
                Box::into_raw(Box::new(CBoxliteSimple { runtime, litebox })),
            )
        };
        Ok(())
    })
}

/// Runs `command` with `argc` arguments of `args` (NULL-terminated or not) to its end: its
/// whole output and exit code in `out_result` (free with `boxlite_result_free`).
///
/// # Safety
/// `simple` a live simple box; `args` holds `argc` NUL-terminated strings (NULL when 0).
#[no_mangle]
pub unsafe extern "C" fn boxlite_simple_run(
    simple: *mut CBoxliteSimple,
    command: *const c_char,
    args: *const *const c_char,
    argc: c_int,
    out_result: *mut *mut CBoxliteExecResult,
    out_error: *mut CBoxliteError,
) -> BoxliteErrorCode {
    call(out_error, || {
        // SAFETY: by this function's contract.
        let litebox = unsafe { object(simple, "box") }?.litebox.clone();
        // SAFETY: as above.
        let program = unsafe { text(command, "command") }?;
        out(out_result, "out_result")?;
        if argc < 0 || (argc > 0 && args.is_null()) {
            return Err(Failure::invalid(format!("args/argc: {argc} arguments")));
        }
        let arguments = (0..argc as usize)
            .map(|i| {
                // SAFETY: `args` holds `argc` pointers (contract).
                let arg = unsafe { *args.add(i) };
                // SAFETY: each is NUL-terminated (contract).
                unsafe { text(arg, &format!("args[{i}]")) }.map(str::to_string)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (stdout, stderr, result) = tokio().block_on(async {
            let execution = litebox
                .exec(BoxCommand::new(program).args(arguments))
                .await?;
            execution.output().await
        })?;
        let result = CBoxliteExecResult {
            exit_code: result.exit_code,
            stdout_text: c_string(&String::from_utf8_lossy(&stdout)).into_raw(),
            stderr_text: c_string(&String::from_utf8_lossy(&stderr)).into_raw(),
        };
        // SAFETY: checked above.
        unsafe { give(out_result, Box::into_raw(Box::new(result))) };
        Ok(())
    })
}

/// Stops and removes a simple box and frees it. NULL is fine.
///
/// # Safety
/// `simple` is NULL or from `boxlite_simple_new`, freed once.
#[no_mangle]
pub unsafe extern "C" fn boxlite_simple_free(simple: *mut CBoxliteSimple) {
    if simple.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw, freed once (contract).
    let simple = unsafe { Box::from_raw(simple) };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let id = simple.litebox.id().clone();
        let _ = tokio().block_on(simple.runtime.remove(&id, true));
    }));
}

/// Frees an execution result. NULL is fine.
///
/// # Safety
/// `result` is NULL or from `boxlite_simple_run`, freed once.
#[no_mangle]
pub unsafe extern "C" fn boxlite_result_free(result: *mut CBoxliteExecResult) {
    if result.is_null() {
        return;
    }
    // SAFETY: made by Box::into_raw; its strings by CString::into_raw; freed once.
    unsafe {
        let result = Box::from_raw(result);
        boxlite_free_string(result.stdout_text);
        boxlite_free_string(result.stderr_text);
    }
}

/// Frees a string the library handed out. NULL is fine.
///
/// # Safety
/// `text` is NULL or from this library, freed once.
#[no_mangle]
pub unsafe extern "C" fn boxlite_free_string(text: *mut c_char) {
    if !text.is_null() {
        // SAFETY: made by CString::into_raw in this library, freed once (contract).
        drop(unsafe { std::ffi::CString::from_raw(text) });
    }
}

/// Frees an error's message (the struct is the caller's) and sets it to NULL. NULL is fine.
///
/// # Safety
/// `error` is NULL or a CBoxliteError filled by this library (or zeroed).
#[no_mangle]
pub unsafe extern "C" fn boxlite_error_free(error: *mut CBoxliteError) {
    // SAFETY: by this function's contract.
    if let Some(error) = unsafe { error.as_mut() } {
        // SAFETY: the message is NULL or this library's string.
        unsafe { boxlite_free_string(error.message) };
        error.message = std::ptr::null_mut();
        error.code = BoxliteErrorCode::Ok;
    }
}
