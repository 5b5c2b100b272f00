//! Standalone `flagger-loadtester` binary (the `flagger` binary offers the same as
//! `flagger loadtester` and `flagger hey`). Invoked as `hey`, it is the built-in hey.

fn main() -> std::process::ExitCode {
    flagger_loadtester::cli::main_from_env()
}
