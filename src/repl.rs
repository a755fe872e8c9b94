//! `iodrift sql`: statements from `-c`/`-f`, or an interactive REPL (history, multi-line until
//! `;`, Ctrl-C cancels the running query, backslash commands) over one [`Session`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use rustyline::error::ReadlineError;

use crate::error::{Error, Result};
use crate::output::{Format, Stdout, write_batches};
use crate::session::{Session, run_script};

const HELP: &str = "\
Statements end with ';' and may span lines. Ctrl-C cancels a running query, Ctrl-D leaves.
  \\d              list tables and views (one view per stage of each rule)
  \\d NAME         describe a table or view
  \\i FILE         run the statements of FILE (e.g. sql/findings.sql)
  \\format NAME    table, csv, json or ndjson
  \\timing         show how long each statement took
  \\q              quit";

/// The state of a SQL session: the context, the output format and whether to time statements.
pub struct Repl {
    session: Session,
    format: Format,
    timing: bool,
}

impl Repl {
    pub fn new(session: Session, format: Format) -> Repl {
        Repl {
            session,
            format,
            timing: false,
        }
    }

    /// Runs every statement of `sql`, printing each result; stops at the first error.
    pub async fn run(&mut self, sql: &str) -> Result<()> {
        let started = Instant::now();
        let frames = run_script(&self.session.ctx, sql)
            .await
            .map_err(Error::query("sql"))?;
        for frame in frames {
            let is_query = !frame.schema().fields().is_empty();
            let batches = tokio::select! {
                batches = frame.collect() => batches.map_err(Error::query("sql"))?,
                _ = tokio::signal::ctrl_c() => return Err(Error::Usage("query cancelled".into())),
            };
            if is_query {
                self.print(&batches)?;
            }
        }
        if self.timing {
            println!("Elapsed {:.3} s", started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    fn print(&self, batches: &[RecordBatch]) -> Result<()> {
        let mut stdout = Stdout::lock();
        write_batches(&mut stdout, batches, self.format)?;
        stdout.flush().map_err(Error::io("standard output"))
    }

    pub async fn run_file(&mut self, path: &Path) -> Result<()> {
        let sql = std::fs::read_to_string(path).map_err(Error::io(path))?;
        self.run(&sql).await
    }

    /// Reads statements until Ctrl-D or `\q`; an error is printed and the REPL goes on.
    pub async fn interactive(&mut self) -> Result<()> {
        let mut editor = rustyline::DefaultEditor::new()
            .map_err(|e| Error::Usage(format!("cannot start the line editor: {e}")))?;
        let history = history_path();
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        println!(
            "iodrift SQL over {} — \\? for help, \\d for tables and stage views",
            self.session.store.location()
        );
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() {
                "iodrift> "
            } else {
                "    ...> "
            };
            let line = match tokio::task::block_in_place(|| editor.readline(prompt)) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    buffer.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(Error::Usage(format!("cannot read input: {e}"))),
            };
            let trimmed = line.trim();
            if buffer.is_empty() && trimmed.starts_with('\\') {
                let _ = editor.add_history_entry(trimmed);
                match self.command(trimmed).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        eprintln!("error: {e}");
                        continue;
                    }
                }
            }
            if trimmed.is_empty() && buffer.is_empty() {
                continue;
            }
            buffer.push_str(&line);
            buffer.push('\n');
            if trimmed.ends_with(';') {
                let statement = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(statement.trim());
                if let Err(e) = self.run(&statement).await {
                    eprintln!("error: {e}");
                }
            }
        }
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
        Ok(())
    }

    /// A backslash command; `Ok(false)` means quit.
    async fn command(&mut self, line: &str) -> Result<bool> {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        let argument = words.next();
        match (name, argument) {
            ("\\q", _) => return Ok(false),
            ("\\?" | "\\h", _) => println!("{HELP}"),
            ("\\timing", _) => {
                self.timing = !self.timing;
                println!("Timing is {}.", if self.timing { "on" } else { "off" });
            }
            ("\\format", Some(format)) => {
                self.format = match Format::parse(format).map_err(Error::Usage)? {
                    Format::Ocsf => {
                        return Err(Error::Usage(
                            "ocsf is a format of findings (detect, eval, the schedule), not of \
                             query results"
                                .into(),
                        ));
                    }
                    format => format,
                };
            }
            ("\\format", None) => println!("{:?}", self.format),
            ("\\i", Some(file)) => self.run_file(&PathBuf::from(file)).await?,
            ("\\d", None) => {
                println!("Shared (schema public):");
                self.run(
                    "SELECT table_name, table_type FROM information_schema.tables \
                     WHERE table_schema = 'public' ORDER BY table_type, table_name;",
                )
                .await?;
                println!("Each rule's own (schema per rule; it also sees every shared table):");
                self.run(
                    "SELECT r.rule, t.table_schema, t.table_name, t.table_type \
                     FROM information_schema.tables AS t \
                     JOIN rules AS r ON t.table_schema = r.schema \
                     WHERE t.table_name NOT IN (SELECT table_name FROM information_schema.tables \
                                                WHERE table_schema = 'public') \
                     ORDER BY r.rule, t.table_name;",
                )
                .await?;
            }
            ("\\d", Some(table)) => {
                let quoted: Vec<String> = table
                    .split('.')
                    .map(|part| format!("\"{}\"", part.replace('"', "\"\"")))
                    .collect();
                self.run(&format!("DESCRIBE {};", quoted.join("."))).await?;
            }
            ("\\rules", _) => self.run("SELECT * FROM rules ORDER BY rule;").await?,
            _ => {
                return Err(Error::Usage(format!(
                    "unknown command {line:?}: \\? lists them"
                )));
            }
        }
        Ok(true)
    }
}

fn history_path() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".iodrift_history"))
}
