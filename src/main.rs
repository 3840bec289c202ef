//! The `atoll` binary: flags -> configuration -> the mode asked for; exit codes.
//! 0 success, 1 a failure while running, 2 a bad flag or configuration.

use std::process::ExitCode;

use atoll::config::{Config, Mode};

fn main() -> ExitCode {
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
        Mode::HashPassword(user) => atoll::auth::hash_password_line(&user, std::io::stdin().lock()),
        Mode::Bundle(ref job) => atoll::bundle::run(&config, job),
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
