//! Uploads: `POST /channels/{type}/{id}/file` and `/image` (UploadChannelFile, UploadChannelImage;
//! `multipart/form-data` with a `file` part), kept in memory within `MAX_UPLOADS_TOTAL_BYTES` per
//! app, served back unauthenticated at the returned URL (`GET /uploads/{api_key}/{id}/{name}`; the
//! random id is the capability, as a CDN's signed URL is), and `DELETE` of the same routes with
//! `?url=`. The URL names the host the client called (`X-Forwarded-Host` behind the gateway), so a
//! browser can load an image through whatever it talks to.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::channels::existing;
use crate::config::{MAX_UPLOADS_PER_APP, MAX_UPLOADS_TOTAL_BYTES};
use crate::ctx::{json_response, Body, Ctx};
use crate::error::ApiError;
use crate::multipart;
use crate::req::Req;
use crate::store::{AppData, Upload};

/// Longest file name kept in the URL.
const MAX_NAME: usize = 100;

/// A multipart upload request as `rest` read it: the form, and where its files will be served.
pub(crate) struct Form {
    pub boundary: String,
    /// `scheme://host` the client called.
    pub base: String,
    pub body: Bytes,
}

/// The boundary of a `multipart/form-data` request, if the request is one.
pub(crate) fn boundary(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart::boundary)
}

/// `scheme://host` the client called: the gateway's forwarded host and scheme, else `Host`.
pub(crate) fn base_url(headers: &HeaderMap) -> String {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = match get("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    let valid = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
    };
    let host = get("x-forwarded-host")
        .map(|h| h.split(',').next().unwrap_or(h).trim())
        .filter(valid)
        .or_else(|| get("host").map(str::trim).filter(valid))
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// `POST /channels/{type}/{id}/file|image` → `UploadChannelFileResponse` /
/// `UploadChannelResponse` (201). Members only; an image must have an `image/*` type.
pub(crate) fn upload(
    app: &mut AppData,
    req: &Req<'_>,
    api_key: &str,
    cid: &str,
    image: bool,
    form: Option<&Form>,
) -> Result<Value, ApiError> {
    let ch = existing(app, cid)?;
    let form = form
        .ok_or_else(|| ApiError::input("an upload must be multipart/form-data with a file part"))?;
    let parts =
        multipart::parse(&form.body, &form.boundary).map_err(|e| ApiError::input(e.to_string()))?;
    // A server-side upload names its user in the form's `user` part, as the SDK sends it.
    let hint: Option<String> = parts
        .iter()
        .find(|p| p.name == "user")
        .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
        .and_then(|u| u.get("id").and_then(Value::as_str).map(str::to_owned));
    let user = req.acting_user(hint.as_deref())?;
    if matches!(req.ident, crate::auth::Identity::User(_))
        && !ch.members.iter().any(|m| m.user_id == user)
    {
        return Err(ApiError::forbidden(format!(
            "only members of {cid} may upload files to it"
        )));
    }
    let file = parts
        .into_iter()
        .find(|p| p.name == "file")
        .ok_or_else(|| ApiError::input("the form has no file part"))?;
    let name = safe_name(file.filename.as_deref().unwrap_or("file"));
    let content_type = file
        .content_type
        .filter(|t| !t.is_empty() && t != "multipart/form-data")
        .unwrap_or_else(|| guess_type(&name).to_owned());
    if image && !content_type.starts_with("image/") {
        return Err(ApiError::input(format!(
            "{content_type} is not an image type"
        )));
    }
    let size = file.data.len();
    if app.uploads.len() >= MAX_UPLOADS_PER_APP
        || app.upload_bytes.saturating_add(size) > MAX_UPLOADS_TOTAL_BYTES
    {
        return Err(ApiError::new(
            4,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the emulator's upload storage is full ({MAX_UPLOADS_PER_APP} files or \
                 {MAX_UPLOADS_TOTAL_BYTES} bytes); delete files first"
            ),
        )
        .at_bound("upload_storage"));
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let url = format!("{}/uploads/{api_key}/{id}/{name}", form.base);
    app.upload_bytes += size;
    app.uploads.insert(
        id,
        Upload {
            cid: cid.to_owned(),
            user_id: user,
            name,
            content_type,
            bytes: file.data,
        },
    );
    Ok(if image {
        json!({ "file": url, "thumb_url": url })
    } else {
        json!({ "file": url })
    })
}

/// `DELETE /channels/{type}/{id}/file|image?url=…` → `Response`: the uploader (or a server
/// token) removes a file of this channel.
pub(crate) fn delete(app: &mut AppData, req: &Req<'_>, cid: &str) -> Result<Value, ApiError> {
    existing(app, cid)?;
    let user = req.acting_user(None)?;
    let url = req
        .query
        .get("url")
        .ok_or_else(|| ApiError::input("url is required"))?;
    let id = id_of(url);
    let found = id
        .and_then(|id| app.uploads.get(id).map(|u| (id, u)))
        .filter(|(_, u)| u.cid == cid)
        .map(|(id, u)| (id.to_owned(), u.user_id.clone()));
    let Some((id, owner)) = found else {
        return Err(ApiError::not_found(format!("no file {url} in {cid}")));
    };
    if matches!(req.ident, crate::auth::Identity::User(_)) && owner != user {
        return Err(ApiError::forbidden("only the uploader may delete a file"));
    }
    if let Some(gone) = app.uploads.remove(&id) {
        app.upload_bytes = app.upload_bytes.saturating_sub(gone.bytes.len());
    }
    Ok(json!({}))
}

/// The upload id in one of our URLs: the segment after `/uploads/{api_key}/`.
fn id_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("/uploads/")?;
    let mut segs = rest.split('/');
    segs.next()?;
    segs.next()
}

/// `GET /uploads/{api_key}/{id}/{name}`: the stored bytes, with headers that keep a browser from
/// running what someone uploaded (no sniffing, sandboxed, non-images as attachments).
pub(crate) fn serve(ctx: &Ctx, api_key: &str, id: &str) -> Response<Body> {
    let found = {
        let store = ctx.emulator.lock();
        store
            .apps
            .get(api_key)
            .and_then(|app| app.uploads.get(id))
            .map(|u| (u.bytes.clone(), u.content_type.clone(), u.name.clone()))
    };
    let Some((bytes, content_type, name)) = found else {
        return json_response(
            StatusCode::NOT_FOUND,
            &ApiError::not_found("no such file").body(),
        );
    };
    let mut resp = Response::new(Full::new(bytes));
    let h = resp.headers_mut();
    let kind = HeaderValue::from_str(&content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, kind);
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if !content_type.starts_with("image/") {
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    resp
}

/// A file name safe in a URL path and a header: `[A-Za-z0-9._-]`, at most `MAX_NAME` characters.
fn safe_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect();
    if clean.trim_matches('.').is_empty() {
        "file".to_owned()
    } else {
        clean
    }
}

/// A content type from the file extension, when the part named none.
fn guess_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert_eq!(safe_name("../../etc/pass wd"), "pass_wd");
        assert_eq!(safe_name(".."), "file");
        assert_eq!(safe_name("C:\\x\\pic.PNG"), "pic.PNG");
        assert_eq!(guess_type("pic.PNG"), "image/png");
        assert_eq!(id_of("http://h:1/uploads/key/abc/pic.png"), Some("abc"));
        assert_eq!(id_of("http://h:1/other/abc"), None);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("up:9"));
        assert_eq!(base_url(&h), "http://up:9");
        h.insert(
            "x-forwarded-host",
            HeaderValue::from_static("gw.example:443"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(base_url(&h), "https://gw.example:443");
        h.insert("x-forwarded-host", HeaderValue::from_static("evil\"host"));
        assert_eq!(base_url(&h), "https://up:9");
    }
}
