//! Just enough RESP3 for the invalidation channel: encode a command, and cut
//! whole frames (replies and pushes) off the front of a read buffer. Pure, no
//! I/O.

/// One RESP3 frame. Maps, sets and pushes keep their elements in order;
/// the scalar types the channel never looks at are `Other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Frame>),
    Push(Vec<Frame>),
    Other,
}

/// The frame is not RESP3: the connection cannot be trusted any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed;

/// The longest aggregate or bulk string accepted (a key name is far below).
const MAX_LEN: usize = 64 * 1024 * 1024;

/// `args` as a RESP command (an array of bulk strings).
pub fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The first whole frame in `buf` and how many bytes it took; `None` when
/// more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, Malformed> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    // A frame starts with its type byte: "\r\n" first is no frame at all.
    if line_end == 0 {
        return Err(Malformed);
    }
    let kind = buf[0];
    let line = std::str::from_utf8(&buf[1..line_end]).map_err(|_| Malformed)?;
    let after = line_end + 2;
    let count = || -> Result<usize, Malformed> {
        let n: usize = line.parse().map_err(|_| Malformed)?;
        if n > MAX_LEN {
            return Err(Malformed);
        }
        Ok(n)
    };
    match kind {
        b'+' => Ok(Some((Frame::Simple(line.to_string()), after))),
        b'-' => Ok(Some((Frame::Error(line.to_string()), after))),
        b':' => Ok(Some((
            Frame::Int(line.parse().map_err(|_| Malformed)?),
            after,
        ))),
        b'_' => Ok(Some((Frame::Null, after))),
        b'#' | b',' | b'(' => Ok(Some((Frame::Other, after))),
        b'$' | b'=' | b'!' => {
            if line == "-1" {
                return Ok(Some((Frame::Null, after)));
            }
            let n = count()?;
            if buf.len() < after + n + 2 {
                return Ok(None);
            }
            if &buf[after + n..after + n + 2] != b"\r\n" {
                return Err(Malformed);
            }
            let body = buf[after..after + n].to_vec();
            let frame = match kind {
                b'$' => Frame::Bulk(body),
                b'!' => Frame::Error(String::from_utf8_lossy(&body).into_owned()),
                // Verbatim text (INFO's answer): "txt:" and the text.
                _ => match body.get(..4) {
                    Some(b"txt:") => Frame::Bulk(body[4..].to_vec()),
                    _ => Frame::Other,
                },
            };
            Ok(Some((frame, after + n + 2)))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            if line == "-1" {
                return Ok(Some((Frame::Null, after)));
            }
            let n = count()?;
            // Maps and attributes hold n pairs.
            let elements = if matches!(kind, b'%' | b'|') {
                n * 2
            } else {
                n
            };
            let mut items = Vec::with_capacity(elements.min(1024));
            let mut at = after;
            for _ in 0..elements {
                match parse(&buf[at..])? {
                    None => return Ok(None),
                    Some((f, used)) => {
                        items.push(f);
                        at += used;
                    }
                }
            }
            let frame = match kind {
                b'>' => Frame::Push(items),
                b'*' | b'~' => Frame::Array(items),
                _ => Frame::Other,
            };
            Ok(Some((frame, at)))
        }
        _ => Err(Malformed),
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            command(&[b"CLIENT", b"TRACKING"]),
            b"*2\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n"
        );
    }

    #[test]
    fn invalidation_pushes_and_replies() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*2\r\n$4\r\ntg:a\r\n$4\r\ntg:b\r\n+PONG\r\n";
        let (f, used) = parse(push).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::Push(vec![
                Frame::Bulk(b"invalidate".to_vec()),
                Frame::Array(vec![
                    Frame::Bulk(b"tg:a".to_vec()),
                    Frame::Bulk(b"tg:b".to_vec())
                ]),
            ])
        );
        assert_eq!(
            parse(&push[used..]).unwrap().unwrap().0,
            Frame::Simple("PONG".into())
        );
        // FLUSHALL: the keys are a null.
        let flush = b">2\r\n$10\r\ninvalidate\r\n_\r\n";
        assert_eq!(
            parse(flush).unwrap().unwrap().0,
            Frame::Push(vec![Frame::Bulk(b"invalidate".to_vec()), Frame::Null])
        );
        // HELLO's answer is a map.
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n";
        assert_eq!(parse(hello).unwrap().unwrap(), (Frame::Other, hello.len()));
        assert_eq!(
            parse(b"-NOAUTH Authentication required.\r\n")
                .unwrap()
                .unwrap()
                .0,
            Frame::Error("NOAUTH Authentication required.".into())
        );
    }

    #[test]
    fn partial_frames_wait_for_more_and_garbage_is_refused() {
        let push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$4\r\ntg:a\r\n";
        for cut in 0..push.len() {
            assert_eq!(parse(&push[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(b"?what\r\n"), Err(Malformed));
        assert_eq!(parse(b"\r\n+OK\r\n"), Err(Malformed));
        assert_eq!(
            parse(b"=9\r\ntxt:a:b\r\n\r\n").unwrap().unwrap().0,
            Frame::Bulk(b"a:b\r\n".to_vec())
        );
        assert_eq!(parse(b"$4\r\nabcdef\r\n"), Err(Malformed));
        assert_eq!(parse(b"*99999999999\r\n"), Err(Malformed));
    }
}
