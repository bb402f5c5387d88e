//! What `sse.rs` feeds eventsource-stream instead of the raw body: the same bytes with every line
//! ending (CRLF, bare CR, LF — all three are legal in SSE) turned into LF, and one more LF at EOF
//! when the body ended at a line boundary. eventsource-stream 0.2 parses with streaming nom: a CR
//! at the end of what it has read might be the first half of a CRLF, so it waits for the next byte
//! — and at EOF there is none, so the last event of a bare-CR stream was never dispatched (and
//! mid-stream every bare-CR event waited for the next chunk). With LF only, nothing is ambiguous.

use futures_util::{Stream, StreamExt, stream};

/// Tracks line endings across chunk boundaries (a CRLF may arrive split in two).
#[derive(Debug, Default)]
struct LineEnds {
    /// The previous byte was a CR (already written as LF), so an LF now completes that CRLF.
    after_cr: bool,
    /// The last byte written.
    last: Option<u8>,
}

impl LineEnds {
    fn normalize(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        // CR and LF never occur inside a multi-byte UTF-8 sequence, so bytes are safe to map.
        for &byte in chunk {
            match byte {
                b'\r' => {
                    out.push(b'\n');
                    self.after_cr = true;
                }
                b'\n' if self.after_cr => self.after_cr = false,
                other => {
                    out.push(other);
                    self.after_cr = false;
                }
            }
        }
        if let Some(&last) = out.last() {
            self.last = Some(last);
        }
        out
    }

    /// At EOF: an empty line when the body ended at a line boundary, so an event whose every line
    /// arrived is dispatched even if the blank line after it did not. A body cut mid-line adds
    /// nothing: its partial line (and event) is dropped, as the SSE spec says.
    fn finish(&self) -> Option<Vec<u8>> {
        (self.last == Some(b'\n')).then(|| b"\n".to_vec())
    }
}

/// `body` with LF line endings only, plus the closing LF described in the module docs. Ends after
/// the first transport error (passed on as is).
pub(super) fn normalized<B, E>(body: impl Stream<Item = Result<B, E>> + Send + Unpin) -> impl Stream<Item = Result<Vec<u8>, E>> + Send
where
    B: AsRef<[u8]>,
{
    stream::unfold(Some((body, LineEnds::default())), |state| async move {
        let (mut body, mut ends) = state?;
        match body.next().await {
            Some(Ok(chunk)) => {
                let out = ends.normalize(chunk.as_ref());
                Some((Ok(out), Some((body, ends))))
            }
            Some(Err(error)) => Some((Err(error), None)),
            None => ends.finish().map(|tail| (Ok(tail), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        let body = stream::iter(chunks.iter().map(|c| Ok::<_, std::convert::Infallible>(c.to_vec())));
        let out = tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(normalized(body).collect::<Vec<_>>());
        out.into_iter().flat_map(|chunk| chunk.unwrap()).collect()
    }

    #[test]
    fn every_line_ending_becomes_one_lf_even_when_a_crlf_is_split_across_chunks() {
        assert_eq!(run(&[b"a\r\nb\rc\n\r", b"\nd\r", b"\r"]), b"a\nb\nc\n\nd\n\n\n");
    }

    #[test]
    fn a_body_cut_mid_line_gets_no_closing_lf() {
        assert_eq!(run(&[b"data: {\"cho"]), b"data: {\"cho");
        assert_eq!(run(&[]), b"");
    }
}
