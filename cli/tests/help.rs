//! What `procwire --help` and `procwire completions SHELL` print.

use std::process::{Command, Output};

const EXE: &str = env!("CARGO_BIN_EXE_procwire");

fn procwire(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().expect("run procwire")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_help_lists_the_exit_codes() {
    for args in [&["--help"][..], &["bench", "--help"], &["echo", "--help"], &["ping", "--help"]] {
        let help = stdout(&procwire(args));
        let codes =
            help.split_once("Exit codes:").unwrap_or_else(|| panic!("{args:?}: no exit codes:\n{help}")).1;
        for code in ["0  success", "1  failure", "2  bad command line", "3  authentication failed"] {
            assert!(codes.contains(code), "{args:?}: no {code:?}:\n{help}");
        }
    }
    // Exit code 2 is what the help says it is.
    assert_eq!(procwire(&["ping", "--no-such-option"]).status.code(), Some(2));
}

#[test]
fn completions_cover_the_subcommands_and_options_but_not_the_hidden_worker() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout(&procwire(&["completions", shell]));
        for word in ["bench", "echo", "ping", "completions", "compare-python", "authkey-file", "html"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
        assert!(!script.contains("__worker"), "{shell} completes the hidden worker subcommand");
    }
    let out = procwire(&["completions", "cmd.exe"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));
}

/// Bash accepts the script and binds the completion to the command.
#[cfg(unix)]
#[test]
fn the_bash_script_loads() {
    if Command::new("bash").arg("--version").output().is_err() {
        eprintln!("no bash: skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("procwire.bash");
    std::fs::write(&path, stdout(&procwire(&["completions", "bash"]))).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source '{}' && complete -p procwire", path.display()))
        .output()
        .unwrap();
    let said = stdout(&out);
    assert!(said.contains("-F _procwire procwire"), "{said}");
}
