//! `push-soak --dump FILE`: the run's raw material as JSON lines, for looking into a failed
//! must-hold with the database at hand — one line per socket (user, dialect, node, why it was
//! opened, how it ended, when, each push id it read with how often and when first, and the
//! order of the reads with their v2 `seq`) and one per accepted alert (id, user, the node it was
//! posted to, when).

use std::io::Write;

use serde_json::json;

use super::record::SocketRecord;
use super::traffic::Sent;

pub(super) fn write(
    path: &std::path::Path,
    records: &[SocketRecord],
    sent: &Sent,
    stamp_to_wall_ms: impl Fn(u64) -> i64,
) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("--dump {}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    for r in records {
        let first: std::collections::HashMap<&str, i64> = r.first_reads.iter().map(|f| (f.id.as_str(), f.wall_ms)).collect();
        let reads: serde_json::Map<String, serde_json::Value> =
            r.reads.iter().map(|(id, n)| (id.clone(), json!([n, first.get(id.as_str())]))).collect();
        let line = json!({
            "socket": {"user": r.user, "dialect": format!("{:?}", r.dialect), "node": r.node, "origin": format!("{:?}", r.origin),
                       "fate": format!("{:?}", r.fate), "connected_ms": r.connected_wall_ms, "ended_ms": r.ended_wall_ms,
                       "resume": format!("{:?}", r.resume), "errors": r.error_codes, "reads": reads, "order": r.order}
        });
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    for (id, (user, stamp, node)) in &sent.alerts {
        writeln!(out, "{}", json!({"alert": {"id": id, "user": user, "node": node, "sent_ms": stamp_to_wall_ms(*stamp)}}))
            .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}
