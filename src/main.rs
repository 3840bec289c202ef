//! The `atoll` binary: flags -> configuration -> the mode asked for; exit codes.
//! 0 success, 1 a failure while running, 2 a bad flag or configuration.

use std::process::ExitCode;

use atoll::config::{Config, Mode};

// musl's allocator takes one global lock for every allocation, which made small requests cost
// more CPU than glibc's; with mimalloc they cost the same or less (figures: bench/results/
// findings.md). glibc's allocator stays where glibc is the libc (tests, the armv7 release).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cap_blocking_threads();
    let args: atoll::cli::Args = argh::from_env();
    let config = match Config::from_args(args, &|k| std::env::var(k).ok()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("atoll: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level);
    let result = match config.mode {
        Mode::Version => {
            println!(
                "atoll {} ({})",
                env!("CARGO_PKG_VERSION"),
                env!("ATOLL_TARGET")
            );
            Ok(())
        }
        Mode::Serve => atoll::serve::run(&config),
        Mode::Gc => gc(&config),
        Mode::Verify { repair } => verify(&config, repair),
        Mode::PrintFile(name) => atoll::assets::file(&name)
            .map(|text| print!("{text}"))
            .map_err(atoll::Error::Config),
        Mode::HashPassword(user) => atoll::auth::hash_password_line(&user, std::io::stdin().lock()),
        Mode::Bundle(ref job) => atoll::bundle::run(&config.data_dir, options(&config), job),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming the flag or file: journald and terminals both show it.
            eprintln!("atoll: {e}");
            match e {
                atoll::Error::Config(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// The pool of threads that runs blocking work (SQLite, file I/O) grows by one thread per
/// concurrent call and never shrinks, and past a few threads per core they only contend:
/// measured on 2 cores under 50 concurrent manifest GETs, a cap of 8 gave 22k req/s and a 12 MB
/// peak, against 13k req/s and 21 MB uncapped. The operator's BLOCKING_MAX_THREADS wins.
fn cap_blocking_threads() {
    if std::env::var_os("BLOCKING_MAX_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        // Before any thread exists: the blocking crate reads it when the pool first starts.
        std::env::set_var("BLOCKING_MAX_THREADS", (4 * cores).max(8).to_string());
    }
}

fn init_logging(level: log::LevelFilter) {
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(log::LevelFilter::Off)
        .set_thread_level(log::LevelFilter::Off)
        .add_filter_allow_str("atoll")
        .build();
    // Colours only on a terminal: journald and log files get plain text.
    let colour = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        simplelog::ColorChoice::Auto
    } else {
        simplelog::ColorChoice::Never
    };
    let _ = simplelog::TermLogger::init(level, config, simplelog::TerminalMode::Stderr, colour);
}

/// The registry's options for the command-line modes: the defaults, on the configured store.
fn options(config: &Config) -> atoll::registry::Options {
    atoll::registry::Options {
        blobs: config.blobs.clone(),
        index: config.index.clone(),
        ..Default::default()
    }
}

/// `atoll --verify [--repair]`: exit 0 when the disk matches the index (or was repaired).
fn verify(config: &Config, repair: bool) -> atoll::Result<()> {
    let registry =
        atoll::registry::Registry::open_existing(&config.data_dir, options(config), !repair)?;
    let mut sink = atoll::console::Terminal::new();
    let report = registry.verify(repair, &mut sink)?;
    sink.done();
    println!("{}", report.summary());
    if report.sound() {
        Ok(())
    } else {
        Err(atoll::Error::Corrupt(if repair {
            "the index itself is damaged: restore it from a backup".into()
        } else {
            "damage found: run atoll --verify --repair to set it aside".into()
        }))
    }
}

/// `atoll --gc`: exit 0 when the collection finished (even if it stepped over problems, which
/// it reports), non-zero when it could not run.
fn gc(config: &Config) -> atoll::Result<()> {
    let registry = atoll::registry::Registry::open_existing(
        &config.data_dir,
        options(config),
        config.gc.dry_run,
    )?;
    let report = atoll::jobs::collect(&registry, &config.gc.options())?;
    match report.errors.len() {
        0 => Ok(()),
        n => Err(atoll::Error::Unavailable(format!(
            "garbage collection finished with {n} problems (listed above)"
        ))),
    }
}
