//! `parapet`: the server (`parapet serve`) and the client for operators and auditors.

#![forbid(unsafe_code)]

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
