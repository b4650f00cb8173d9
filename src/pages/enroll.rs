//! The enrollment page: QR code, the secret as text, and the field for the first code.

use qrcode::render::svg;
use qrcode::QrCode;

use super::{error_banner, esc, layout};

/// What the enrollment page shows.
pub struct Enroll<'a> {
    pub issuer: &'a str,
    pub user: &'a str,
    /// The `otpauth://` URI encoded in the QR code.
    pub uri: &'a str,
    /// The secret in Base32, grouped by four.
    pub grouped_secret: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
}

/// The QR code of `text` as an inline SVG element.
///
/// # Errors
/// The text is too long for a QR code.
pub fn qr_svg(text: &str) -> Result<String, qrcode::types::QrError> {
    let code = QrCode::new(text.as_bytes())?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    // Drop the XML declaration: the SVG is embedded in HTML.
    let start = image.find("<svg").unwrap_or(0);
    Ok(image.get(start..).unwrap_or("").replacen(
        "<svg",
        "<svg class=\"qr\" role=\"img\" aria-label=\"QR code for your authenticator app\"",
        1,
    ))
}

/// Renders the page.
///
/// # Errors
/// The URI does not fit in a QR code.
pub fn render(p: &Enroll<'_>) -> Result<String, qrcode::types::QrError> {
    let qr = qr_svg(p.uri)?;
    let body = format!(
        "<h1>Set up two-factor authentication</h1>\
<p>Signed in to <strong>{issuer}</strong> as <strong>{user}</strong>. Scan this code with your \
authenticator app (Google Authenticator, Authy, Okta Verify, …).</p>{error}{qr}\
<p class=\"muted\">Cannot scan? Enter this key by hand (time-based, 6 digits):</p>\
<p class=\"secret\" id=\"secret\">{secret}</p>\
<form method=\"post\" action=\"{action}\" autocomplete=\"off\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"code\">Six-digit code from the app</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" \
maxlength=\"6\" autocomplete=\"one-time-code\" required autofocus>\
<button type=\"submit\">Activate</button></form>",
        issuer = esc(p.issuer),
        user = esc(p.user),
        error = error_banner(p.error),
        secret = esc(p.grouped_secret),
        action = esc(p.action),
        csrf = esc(p.csrf),
    );
    Ok(layout("Set up two-factor authentication", &body))
}
