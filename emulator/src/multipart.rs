//! A bounded `multipart/form-data` parser (RFC 7578) for the upload routes: the whole body is
//! already in memory (bounded by `MAX_UPLOAD_BYTES`), so this only splits it at the boundary and
//! reads each part's `Content-Disposition` name and filename and its `Content-Type`. Pure
//! functions; the routes are in `uploads`.

use bytes::Bytes;

/// Parts one form may have; the SDK sends one file and at most a `user` field.
const MAX_PARTS: usize = 16;
/// Longest header block of one part.
const MAX_PART_HEADERS: usize = 8 * 1024;
/// Longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// Why a body is not a form this parser accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MultipartError {
    #[error("the multipart body does not start with its boundary")]
    NoBoundary,
    #[error("a multipart part is not terminated by the boundary")]
    Unterminated,
    #[error("a multipart part has no header block, or one over {MAX_PART_HEADERS} bytes")]
    BadHeaders,
    #[error("a multipart part lacks Content-Disposition: form-data; name=…")]
    NoName,
    #[error("more than {MAX_PARTS} multipart parts")]
    TooManyParts,
}

/// One part of a form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// The boundary of a `multipart/form-data` content type, if it is one.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    let kind = params.next()?.trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= MAX_BOUNDARY).then(|| v.to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Splits `body` into its parts.
pub(crate) fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let delim = format!("--{boundary}");
    let between = format!("\r\n--{boundary}");
    // The preamble before the first boundary is ignored (RFC 2046).
    let first = find(body, delim.as_bytes(), 0).ok_or(MultipartError::NoBoundary)?;
    let mut pos = first + delim.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return Err(MultipartError::Unterminated);
        }
        pos += 2;
        if parts.len() == MAX_PARTS {
            return Err(MultipartError::TooManyParts);
        }
        let head_end = find(body, b"\r\n\r\n", pos)
            .filter(|e| e - pos <= MAX_PART_HEADERS)
            .ok_or(MultipartError::BadHeaders)?;
        let head =
            std::str::from_utf8(&body[pos..head_end]).map_err(|_| MultipartError::BadHeaders)?;
        let data_start = head_end + 4;
        let data_end =
            find(body, between.as_bytes(), data_start).ok_or(MultipartError::Unterminated)?;
        parts.push(part(head, body.slice(data_start..data_end))?);
        pos = data_end + between.len();
    }
}

fn part(head: &str, data: Bytes) -> Result<Part, MultipartError> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in head.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned());
        } else if key.eq_ignore_ascii_case("content-disposition") {
            let mut params = value.split(';');
            if !params
                .next()
                .is_some_and(|d| d.trim().eq_ignore_ascii_case("form-data"))
            {
                return Err(MultipartError::NoName);
            }
            for p in params {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let v = v.trim().trim_matches('"').to_owned();
                match k.trim() {
                    "name" => name = Some(v),
                    "filename" => filename = Some(v),
                    _ => {}
                }
            }
        }
    }
    Ok(Part {
        name: name.ok_or(MultipartError::NoName)?,
        filename,
        content_type,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----abc").as_deref(),
            Some("----abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=x; boundary=\"q r\"").as_deref(),
            Some("q r")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "b".repeat(71))),
            None
        );
    }

    #[test]
    fn parses_a_file_and_a_field() {
        let body = Bytes::from_static(
            b"preamble\r\n--XY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n--X\r\n--XY\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\n{\"id\":\"u\"}\r\n--XY--\r\n",
        );
        let parts = parse(&body, "XY").expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "file");
        assert_eq!(parts[0].filename.as_deref(), Some("a.png"));
        assert_eq!(parts[0].content_type.as_deref(), Some("image/png"));
        assert_eq!(
            &parts[0].data[..],
            b"\x89PNG\r\n--X",
            "a near-boundary stays data"
        );
        assert_eq!(parts[1].name, "user");
        assert_eq!(&parts[1].data[..], b"{\"id\":\"u\"}");
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let cases: [(&[u8], MultipartError); 4] = [
            (b"no boundary here", MultipartError::NoBoundary),
            (
                b"--XY\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\ndata",
                MultipartError::Unterminated,
            ),
            (
                b"--XY\r\nContent-Disposition: form-data\r\n\r\nd\r\n--XY--",
                MultipartError::NoName,
            ),
            (
                b"--XY\r\nno blank line\r\n--XY--",
                MultipartError::BadHeaders,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(&Bytes::from_static(body), "XY"), Err(want));
        }
        let mut many = Vec::new();
        for _ in 0..=MAX_PARTS {
            many.extend_from_slice(
                b"--XY\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nd\r\n",
            );
        }
        many.extend_from_slice(b"--XY--");
        assert_eq!(
            parse(&Bytes::from(many), "XY"),
            Err(MultipartError::TooManyParts)
        );
    }
}
