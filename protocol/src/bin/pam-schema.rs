//! `pam-schema`: writes the protocol's JSON Schemas and AsyncAPI document (derived from the
//! pam-protocol types) under a docs directory, or checks the committed copies against the types.
//!
//! ```sh
//! cargo run -p pam-protocol --features schema --bin pam-schema -- --write docs/
//! cargo run -p pam-protocol --features schema --bin pam-schema -- --check docs/
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use pam_protocol::schema;

const USAGE: &str = "usage: pam-schema --write <docs-dir> | --check <docs-dir>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, dir) = match args.as_slice() {
        [mode, dir] if mode == "--write" || mode == "--check" => (mode.as_str(), PathBuf::from(dir)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if mode == "--write" {
        return match schema::write_to(&dir) {
            Ok(written) => {
                for path in written {
                    println!("wrote {}", path.display());
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("pam-schema: cannot write under {}: {error}", dir.display());
                ExitCode::FAILURE
            }
        };
    }
    let problems = schema::drift(&dir);
    if problems.is_empty() {
        println!("{} matches the protocol types", dir.display());
        return ExitCode::SUCCESS;
    }
    for problem in problems {
        eprintln!("{problem}");
    }
    eprintln!("regenerate with: cargo run -p pam-protocol --features schema --bin pam-schema -- --write {}", dir.display());
    ExitCode::FAILURE
}
