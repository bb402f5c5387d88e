//! `FileJournal`: the outbox's journal as a JSON-lines file (`PAM_OUTBOX_JOURNAL`). Each append
//! writes whole lines and fsyncs before it returns, so a write the outbox accepted survives a
//! crash; a line cut short by a crash mid-append is skipped (with a log line) when read back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use pam_actors::{OutboxJournal, PendingWrite};

/// The journal file; created on the first append, emptied once everything in it is stored.
pub struct FileJournal {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl FileJournal {
    /// A journal at `path` (nothing is created until the first append).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileJournal { path: path.into(), file: Mutex::new(None) }
    }

    /// Fails at startup, with the path, when the journal's folder cannot hold it.
    pub fn check_writable(&self) -> std::io::Result<()> {
        open_for_append(&self.path).map(drop)
    }
}

/// Opens the file for appending; a line left unfinished by a crash is ended first, so it cannot
/// swallow the start of the next write.
fn open_for_append(path: &std::path::Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new().create(true).read(true).append(true).open(path)?;
    let len = file.metadata()?.len();
    if len > 0 {
        use std::io::{Read, Seek, SeekFrom};
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    Ok(file)
}

impl OutboxJournal for FileJournal {
    fn append(&self, writes: &[PendingWrite]) -> std::io::Result<()> {
        let mut lines = Vec::new();
        for write in writes {
            serde_json::to_writer(&mut lines, write)?;
            lines.push(b'\n');
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            *file = Some(open_for_append(&self.path)?);
        }
        let handle = file.as_mut().expect("opened above");
        handle.write_all(&lines)?;
        handle.sync_data()
    }

    fn read_all(&self) -> std::io::Result<Vec<PendingWrite>> {
        let file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut writes = Vec::new();
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(write) => writes.push(write),
                Err(error) => {
                    tracing::warn!(journal = %self.path.display(), line = number + 1, %error, "skipped an unreadable journal line")
                }
            }
        }
        Ok(writes)
    }

    fn clear(&self) -> std::io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        *file = None;
        match std::fs::remove_file(&self.path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pam_actors::{TurnKey, UnansweredMark};
    use pam_protocol::{SessionId, UserId};

    fn mark(id: &str) -> PendingWrite {
        let user = UserId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        let key = TurnKey { user, session: SessionId::default_session(), client_msg_id: id.into() };
        PendingWrite::Unanswered(UnansweredMark { key, reason: "shutdown".into(), node: "node-a".into(), boot: Some("b1".into()) })
    }

    #[test]
    fn appended_writes_read_back_in_order_a_torn_line_is_skipped_and_clear_removes_the_file() {
        let path = std::env::temp_dir().join(format!("pam-journal-{}.jsonl", uuid::Uuid::new_v4().simple()));
        let journal = FileJournal::new(&path);
        assert!(journal.read_all().unwrap().is_empty(), "a missing file is an empty journal");
        journal.append(&[mark("a"), mark("b")]).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"write\":\"us").unwrap();
        let journal = FileJournal::new(&path);
        journal.append(&[mark("c")]).unwrap();
        let ids: Vec<_> = journal.read_all().unwrap().iter().map(|w| w.key().client_msg_id.clone()).collect();
        assert_eq!(ids, ["a", "b", "c"], "the torn line is skipped and does not swallow the next write");
        journal.clear().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_mark_journaled_before_marks_named_their_node_still_reads_back() {
        let path = std::env::temp_dir().join(format!("pam-journal-{}.jsonl", uuid::Uuid::new_v4().simple()));
        let journal = FileJournal::new(&path);
        journal.append(&[mark("old")]).unwrap();
        // What an older gateway wrote: the same line without `node` and `boot`.
        let line = std::fs::read_to_string(&path).unwrap().replace(",\"node\":\"node-a\"", "").replace(",\"boot\":\"b1\"", "");
        assert!(!line.contains("node-a") && !line.contains("b1"), "{line}");
        std::fs::write(&path, line).unwrap();
        match journal.read_all().unwrap().as_slice() {
            [PendingWrite::Unanswered(mark)] => {
                assert_eq!((mark.key.client_msg_id.as_str(), mark.node.as_str(), &mark.boot), ("old", "", &None))
            }
            other => panic!("{other:?}"),
        }
        journal.clear().unwrap();
    }
}
