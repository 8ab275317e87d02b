//! The `baseinit` binary: parse the command line, set up logging and the
//! runtime, run the supervisor, exit with the code its outcome maps to.

use clap::Parser;
use nix::unistd::getpid;

use baseinit::cli::Cli;
use baseinit::exit::{BOOT_FAILED, INTERNAL_ERROR};
use baseinit::shutdown::KillAll;
use baseinit::supervisor::{Options, Supervisor};

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = baseinit::applets::dispatch(&args) {
        std::process::exit(code);
    }
    // Before anything else (and before the log thread starts): see `inherited`.
    baseinit::inherited::hold_signals();
    baseinit::inherited::reserve_fd_table();
    // Before the first thread: see `resident`.
    baseinit::resident::one_malloc_arena();
    let cli = Cli::parse_from(&args);
    let remap = cli.remap().unwrap_or_else(|e| e.exit());
    baseinit::logging::init(cli.quiet, cli.verbose, cli.log_format == baseinit::output::Format::Json);
    let code = run(cli, remap);
    // Bounded: a stderr nobody reads must not keep PID 1 from exiting.
    baseinit::logging::flush(std::time::Duration::from_secs(1));
    std::process::exit(code);
}

fn run(cli: Cli, remap: baseinit::exit::Remap) -> i32 {
    let is_pid1 = getpid().as_raw() == 1;
    if !is_pid1 {
        // Orphans of our descendants come to us instead of the real init, so
        // we reap them and can stop them at shutdown.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            tracing::warn!("cannot become a child subreaper: {e}; orphans will go to the real init");
        }
    }
    baseinit::inherited::clean_up();

    let (service_dir, service_dir_required) = cli.paths.service_dir();
    let opts = Options {
        service_dir_required,
        service_dir,
        skip_services: cli.skip_runit,
        startup: (!cli.skip_startup_files).then(|| (cli.paths.startup_dir.clone(), cli.paths.rc_local.clone())),
        insecure_key: cli.enable_insecure_key.then(|| cli.insecure_key_script.clone()),
        pre_shutdown_dir: cli.pre_shutdown_dir.clone(),
        post_shutdown_dir: cli.post_shutdown_dir.clone(),
        hook_timeout: cli.stop.hook_timeout,
        shutdown_delay: cli.stop.shutdown_delay,
        main_stop_signal: cli.main_stop_signal,
        remap_exit: remap.clone(),
        runtime_dir: cli.runtime.runtime_dir.clone(),
        env: baseinit::container_env::EnvPaths::beside(&cli.paths.env_dir),
        output: cli.output,
        style: baseinit::output::Style {
            format: cli.log_format,
            timestamps: cli.log_timestamps,
        },
        command: cli.command.clone(),
        defaults: cli.defaults(),
        kill_all: KillAll::choose(is_pid1, !cli.stop.no_kill_all_on_exit),
        kill_all_grace: cli.stop.kill_all_timeout,
        startup_timeout: cli.startup_timeout,
        wait_for_services: cli.wait_for_services.map(|d| (!d.is_zero()).then_some(d)),
        syslog: cli.syslog_settings(),
    };
    tracing::debug!(
        "baseinit {} starting as {}",
        env!("CARGO_PKG_VERSION"),
        if is_pid1 { "PID 1" } else { "a child subreaper" }
    );
    let kill_all = opts.kill_all;
    let grace = opts.defaults.stop_timeout;
    // First: it starts the container environment's export on a thread.
    let (supervisor, channels) = Supervisor::new(opts);
    // tokio's default takes up to 1024 readiness events per epoll_wait, in a
    // 12 kB array kept for the runtime's life; fewer per call is as correct
    // (the rest come at the next one), and a supervisor's events are few.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_io_events_per_tick(64)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the event loop: {e}");
            return BOOT_FAILED;
        }
    };
    // A bug must not be a silent death: as PID 1 that would SIGKILL every
    // service. The hook logs the panic (through the log queue: never
    // blocking), and the unwind ends in an emergency stop.
    std::panic::set_hook(Box::new(|info| {
        tracing::error!("baseinit failed (a bug): {info}; stopping every process");
    }));
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        remap.apply(runtime.block_on(supervisor.run(channels)).exit_code())
    }));
    // Not dropped: its tasks, timers and descriptors go with the process,
    // which exits next, at once (see the end of `Supervisor::run`).
    std::mem::forget(runtime);
    match ran {
        Ok(code) => code,
        Err(_) => {
            baseinit::shutdown::emergency_stop(kill_all, grace);
            INTERNAL_ERROR
        }
    }
}
