//! Models of how two console stacks read an `application/x-www-form-urlencoded` body, for
//! the `login_differential` fuzz target. Only `std`: `scripts/login-models-check.sh`
//! compiles this file with plain `rustc` into `fuzz/tools/login_models.rs` and compares
//! it with the real interpreters.
//!
//! * [`php_post`]: PHP 8's `$_POST` (`main/php_variables.c`: `php_std_post_handler`,
//!   `add_post_var`, `php_register_variable_ex`, `php_url_decode`), with the defaults
//!   `max_input_vars = 1000` and `max_input_nesting_level = 64`; [`php_parse_str`] is
//!   `parse_str()` (`php_default_treat_data` with `PARSE_STRING`), which differs in how
//!   it splits and counts.
//! * [`wsgi_post`]: Django's `request.POST` under WSGI (`QueryDict(body,
//!   encoding="utf-8")`): the body decoded as UTF-8, or as ISO-8859-1 when it is not
//!   UTF-8; then `urllib.parse.parse_qsl(keep_blank_values=True, encoding="utf-8",
//!   errors="replace", max_num_fields=1000)` (CPython ≥ 3.10: `&` is the only separator);
//!   `request.POST[name]` is the last value. [`parse_qsl`] is that parser on its own.
//!
//! Both are written as ports of the C and Python code, C strings and all (a NUL ends a
//! PHP variable name), so that they can be checked against the interpreters byte for byte.

/// `max_input_vars` (PHP's default and `php.ini-production`'s).
pub const PHP_MAX_INPUT_VARS: usize = 1000;
/// `max_input_nesting_level` (PHP's default).
pub const PHP_MAX_NESTING: usize = 64;
/// Django's `DATA_UPLOAD_MAX_NUMBER_FIELDS` default.
pub const DJANGO_MAX_FIELDS: usize = 1000;

/// A PHP array key: PHP stores decimal strings in canonical form as integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhpKey {
    Int(i64),
    Str(Vec<u8>),
}

impl PhpKey {
    /// `ZEND_HANDLE_NUMERIC_STR`: `"0"`, `"-5"`, `"123"` (no leading zero, no `-0`, in
    /// range) are integer keys; everything else stays a string.
    pub fn from_bytes(key: &[u8]) -> PhpKey {
        match numeric_key(key) {
            Some(i) => PhpKey::Int(i),
            None => PhpKey::Str(key.to_vec()),
        }
    }

    /// `(string) $key`: integer keys print as the decimal string they came from.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PhpKey::Int(i) => i.to_string().into_bytes(),
            PhpKey::Str(s) => s.clone(),
        }
    }
}

fn numeric_key(key: &[u8]) -> Option<i64> {
    let (neg, digits) = match key.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, key),
    };
    let (&first, _) = digits.split_first()?;
    if !first.is_ascii_digit() {
        return None;
    }
    // Leading zero (unless the whole key is "0"); "-0" is a string. More than 19 digits
    // is too long for a zend_long.
    if (first == b'0' && key.len() > 1) || digits.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    if neg {
        if n - 1 > i64::MAX as u64 {
            return None;
        }
        Some((n as i64).wrapping_neg())
    } else if n > i64::MAX as u64 {
        None
    } else {
        Some(n as i64)
    }
}

/// A PHP value as the request arrays hold them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhpValue {
    Str(Vec<u8>),
    Arr(PhpArray),
}

/// An ordered PHP array (insertion order; an update keeps the position).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhpArray {
    pub entries: Vec<(PhpKey, PhpValue)>,
    /// `nNextFreeElement`; `None` is `ZEND_LONG_MIN` (nothing inserted yet).
    next_free: Option<i64>,
}

impl PhpArray {
    fn position(&self, key: &PhpKey) -> Option<usize> {
        self.entries.iter().position(|(k, _)| k == key)
    }

    fn note_int(&mut self, key: &PhpKey) {
        if let PhpKey::Int(h) = *key {
            if self.next_free.is_none_or(|n| h >= n) {
                self.next_free = Some(if h < i64::MAX { h + 1 } else { i64::MAX });
            }
        }
    }

    /// `zend_symtable_update`: returns the position of the entry.
    fn update(&mut self, key: PhpKey, value: PhpValue) -> usize {
        if let Some(i) = self.position(&key) {
            self.entries[i].1 = value;
            return i;
        }
        self.note_int(&key);
        self.entries.push((key, value));
        self.entries.len() - 1
    }

    /// `zend_hash_next_index_insert`: `None` when the next index is taken (after
    /// `PHP_INT_MAX`).
    fn next_index_insert(&mut self, value: PhpValue) -> Option<usize> {
        let key = PhpKey::Int(self.next_free.unwrap_or(0));
        if self.position(&key).is_some() {
            return None;
        }
        self.note_int(&key);
        self.entries.push((key, value));
        Some(self.entries.len() - 1)
    }

    fn delete(&mut self, key: &PhpKey) {
        if let Some(i) = self.position(key) {
            self.entries.remove(i);
        }
    }

    fn child_array(&mut self, i: usize) -> &mut PhpArray {
        match &mut self.entries[i].1 {
            PhpValue::Arr(a) => a,
            PhpValue::Str(_) => unreachable!("made an array just before"),
        }
    }

    /// `$array[$name]` for a top-level name.
    pub fn get(&self, name: &[u8]) -> Option<&PhpValue> {
        let key = PhpKey::from_bytes(name);
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// `php_url_decode`: `+` is a space, `%` and two hex digits a byte, any other `%` stays.
pub fn php_url_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'+' {
            out.push(b' ');
        } else if b == b'%'
            && i + 2 < s.len()
            && s[i + 1].is_ascii_hexdigit()
            && s[i + 2].is_ascii_hexdigit()
        {
            out.push(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else {
            out.push(b);
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Up to the first NUL: how C reads a `char *`.
fn c_str(s: &[u8]) -> &[u8] {
    s.iter().position(|&b| b == 0).map_or(s, |i| &s[..i])
}

/// `strlen(buf + start)` on a NUL-terminated buffer.
fn strlen(buf: &[u8], start: usize) -> usize {
    c_str(&buf[start..]).len()
}

/// C's `isspace` in the "C" locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// A key that starts with `__Host-` or `__Secure-` although the name as sent (after its
/// leading spaces) does not: PHP discards the variable there, at every level of the name,
/// not only the top one (observed with php-cli 8.2.36, which carries the CVE-2024-2756
/// fix: `x[__Host-b]=1` leaves `x` an empty array; the nesting limit is checked first).
fn forbidden(key: &[u8], var_name: &[u8]) -> bool {
    [&b"__Host-"[..], b"__Secure-"]
        .iter()
        .any(|prefix| key.starts_with(prefix) && !var_name.starts_with(prefix))
}

/// Where `php_register_variable_ex` puts the value: the current index.
enum Slot {
    /// `name[]`: the next integer index.
    Next,
    /// `buf[start..start + len]`.
    Key(usize, usize),
}

/// `php_register_variable_ex` (not for cookies) of `var_name` (already URL-decoded; read
/// as a C string) with `value`, into `track`.
pub fn php_register_variable(track: &mut PhpArray, var_name: &[u8], value: Vec<u8>) {
    let var_name = c_str(var_name);
    // Ignore leading spaces.
    let skip = var_name.iter().take_while(|&&b| b == b' ').count();
    let var_name = &var_name[skip..];
    // A NUL-terminated copy, mangled in place as the C code does.
    let mut buf = var_name.to_vec();
    buf.push(0);
    let mut is_array = false;
    let mut p = 0;
    while buf[p] != 0 {
        match buf[p] {
            b' ' | b'.' => buf[p] = b'_',
            b'[' => {
                is_array = true;
                buf[p] = 0;
                break;
            }
            _ => {}
        }
        p += 1;
    }
    let var_len = p;
    // Discard a name that mangling made start with __Host- / __Secure-.
    if forbidden(&buf[..var_len], var_name) {
        return;
    }
    if var_len == 0 {
        return;
    }
    let top_key = PhpKey::from_bytes(&buf[..var_len]);
    if store(track, &mut buf, var_name, is_array, p, var_len, value) {
        // Too deep: the whole top-level variable is deleted.
        track.delete(&top_key);
    }
}

/// The `[...]` loop and `plain_var` of `php_register_variable_ex`; `buf` is the mangled
/// name, NUL-terminated, with the first `[` (at `ip`, if `is_array`) made a NUL. Returns
/// whether the nesting limit was hit.
fn store(
    track: &mut PhpArray,
    buf: &mut [u8],
    var_name: &[u8],
    is_array: bool,
    mut ip: usize,
    var_len: usize,
    value: Vec<u8>,
) -> bool {
    let mut symtable: &mut PhpArray = track;
    let mut index = Slot::Key(0, var_len);
    let mut nest_level = 0;
    if is_array {
        loop {
            nest_level += 1;
            if nest_level > PHP_MAX_NESTING {
                return true;
            }
            ip += 1;
            let index_s = ip;
            if c_isspace(buf[ip]) {
                ip += 1;
            }
            let mut next: Option<(usize, usize)> = None;
            if buf[ip] != b']' {
                match buf[ip..].iter().position(|&b| b == b']' || b == 0) {
                    Some(off) if buf[ip + off] == b']' => {
                        ip += off;
                        buf[ip] = 0;
                        next = Some((index_s, strlen(buf, index_s)));
                    }
                    _ => {
                        // Not an index: un-terminate the name and mangle the rest.
                        buf[index_s - 1] = b'_';
                        let mut q = index_s;
                        while buf[q] != 0 {
                            if matches!(buf[q], b' ' | b'.' | b'[') {
                                buf[q] = b'_';
                            }
                            q += 1;
                        }
                        if let Slot::Key(start, _) = index {
                            index = Slot::Key(start, strlen(buf, start));
                        }
                        break;
                    }
                }
            }
            let pos = match index {
                Slot::Next => {
                    match symtable.next_index_insert(PhpValue::Arr(PhpArray::default())) {
                        Some(i) => i,
                        None => return false,
                    }
                }
                Slot::Key(start, len) => {
                    if forbidden(&buf[start..start + len], var_name) {
                        return false;
                    }
                    let key = PhpKey::from_bytes(&buf[start..start + len]);
                    match symtable.position(&key) {
                        None => symtable.update(key, PhpValue::Arr(PhpArray::default())),
                        Some(i) => {
                            if !matches!(symtable.entries[i].1, PhpValue::Arr(_)) {
                                symtable.entries[i].1 = PhpValue::Arr(PhpArray::default());
                            }
                            i
                        }
                    }
                }
            };
            symtable = symtable.child_array(pos);
            index = match next {
                None => Slot::Next,
                Some((s, l)) => Slot::Key(s, l),
            };
            ip += 1;
            if buf[ip] == b'[' {
                buf[ip] = 0;
            } else {
                break;
            }
        }
    }
    // plain_var
    match index {
        Slot::Next => {
            symtable.next_index_insert(PhpValue::Str(value));
        }
        Slot::Key(start, len) => {
            if forbidden(&buf[start..start + len], var_name) {
                return false;
            }
            let key = PhpKey::from_bytes(&buf[start..start + len]);
            symtable.update(key, PhpValue::Str(value));
        }
    }
    false
}

/// PHP's `$_POST` for an urlencoded body (`php_std_post_handler` / `add_post_var`):
/// split at every `&` (an empty piece between two `&` is a variable with an empty name,
/// ignored but counted), name and value split at the first `=`, both URL-decoded; a
/// variable is registered and then counted, and parsing stops once the count passes
/// `max_input_vars` (so 1001 pieces are read).
pub fn php_post(body: &[u8]) -> PhpArray {
    let mut track = PhpArray::default();
    let end = body.len();
    let mut ptr = 0;
    let mut count = 0;
    while ptr < end {
        let vsep = body[ptr..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(end, |i| ptr + i);
        let piece = &body[ptr..vsep];
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(i) => (&piece[..i], &piece[i + 1..]),
            None => (piece, &[][..]),
        };
        php_register_variable(&mut track, &php_url_decode(name), php_url_decode(value));
        ptr = vsep + usize::from(vsep != end);
        count += 1;
        if count > PHP_MAX_INPUT_VARS {
            break;
        }
    }
    track
}

/// PHP's `parse_str()` (`php_default_treat_data`, `PARSE_STRING`): the string is read up
/// to its first NUL, `php_strtok_r` skips empty pieces, and a piece past `max_input_vars`
/// stops parsing before it is registered.
pub fn php_parse_str(s: &[u8]) -> PhpArray {
    let mut track = PhpArray::default();
    for (count, token) in c_str(s)
        .split(|&b| b == b'&')
        .filter(|t| !t.is_empty())
        .enumerate()
    {
        if count + 1 > PHP_MAX_INPUT_VARS {
            break;
        }
        let (name, value) = match token.iter().position(|&b| b == b'=') {
            Some(i) => (&token[..i], php_url_decode(&token[i + 1..])),
            None => (token, Vec::new()),
        };
        php_register_variable(&mut track, &php_url_decode(name), value);
    }
    track
}

/// `parse_qsl` raised "Max number of fields exceeded" (Django: `TooManyFieldsSent`, 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyFields;

/// How Django's `QueryDict` turns body bytes into text: UTF-8, or ISO-8859-1 when the
/// bytes are not UTF-8.
pub fn wsgi_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(s) => s.to_string(),
        Err(_) => body.iter().map(|&b| char::from(b)).collect(),
    }
}

/// `urllib.parse.unquote_to_bytes`.
pub fn py_unquote_to_bytes(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && s[i + 1].is_ascii_hexdigit()
            && s[i + 2].is_ascii_hexdigit()
        {
            out.push(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// `urllib.parse.unquote(s, encoding="utf-8", errors="replace")`: each run of ASCII
/// characters is unquoted to bytes and decoded with replacement; other characters stay.
pub fn py_unquote(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        let ascii = rest.bytes().take_while(u8::is_ascii).count();
        if ascii > 0 {
            let bytes = py_unquote_to_bytes(&rest.as_bytes()[..ascii]);
            out.push_str(&String::from_utf8_lossy(&bytes));
            rest = &rest[ascii..];
        }
        let other = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii())
            .map_or(rest.len(), |(i, _)| i);
        out.push_str(&rest[..other]);
        rest = &rest[other..];
    }
    out
}

/// `urllib.parse.parse_qsl(qs, keep_blank_values=True, encoding="utf-8",
/// errors="replace", max_num_fields=max, separator="&")` (CPython 3.10+).
pub fn parse_qsl(
    qs: &str,
    max_num_fields: Option<usize>,
) -> Result<Vec<(String, String)>, TooManyFields> {
    if let Some(max) = max_num_fields {
        let fields = if qs.is_empty() {
            0
        } else {
            1 + qs.matches('&').count()
        };
        if max < fields {
            return Err(TooManyFields);
        }
    }
    Ok(qs
        .split('&')
        .filter(|nv| !nv.is_empty())
        .map(|nv| {
            let (name, value) = nv.split_once('=').unwrap_or((nv, ""));
            (
                py_unquote(&name.replace('+', " ")),
                py_unquote(&value.replace('+', " ")),
            )
        })
        .collect())
}

/// Django's `request.POST` for an urlencoded body: keys in order of first appearance,
/// each with all its values.
pub fn wsgi_post(body: &[u8]) -> Result<Vec<(String, Vec<String>)>, TooManyFields> {
    let pairs = parse_qsl(&wsgi_text(body), Some(DJANGO_MAX_FIELDS))?;
    let mut dict: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in pairs {
        match dict.iter_mut().find(|(key, _)| *key == k) {
            Some((_, values)) => values.push(v),
            None => dict.push((k, vec![v])),
        }
    }
    Ok(dict)
}

/// What a console reads as the user name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// No such field.
    Absent,
    /// A string (bytes for PHP, UTF-8 for Django).
    Str(Vec<u8>),
    /// PHP made the name an array.
    Array,
    /// The console refuses the whole body (Django: `TooManyFieldsSent`).
    Rejected,
}

impl Reading {
    /// The reading that matches what the gate judged.
    pub fn judged(user: Option<&str>) -> Reading {
        user.map_or(Reading::Absent, |u| Reading::Str(u.as_bytes().to_vec()))
    }
}

/// `$_POST[$field]`.
pub fn php_reads(body: &[u8], field: &str) -> Reading {
    match php_post(body).get(field.as_bytes()) {
        None => Reading::Absent,
        Some(PhpValue::Str(s)) => Reading::Str(s.clone()),
        Some(PhpValue::Arr(_)) => Reading::Array,
    }
}

/// `request.POST[field]` (the last value).
pub fn django_reads(body: &[u8], field: &str) -> Reading {
    match wsgi_post(body) {
        Err(TooManyFields) => Reading::Rejected,
        Ok(dict) => match dict.into_iter().find(|(k, _)| k == field) {
            None => Reading::Absent,
            Some((_, mut values)) => Reading::Str(values.pop().unwrap_or_default().into_bytes()),
        },
    }
}

/// Lower-case hex, as PHP's `bin2hex` and Python's `bytes.hex` write it.
pub fn to_hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The model check's text form of a PHP array: `A{key:value,…}`, keys as hex of
/// `(string) $key`, strings as `S` + hex.
pub fn php_text(a: &PhpArray) -> String {
    let items: Vec<String> = a
        .entries
        .iter()
        .map(|(k, v)| {
            let v = match v {
                PhpValue::Str(s) => format!("S{}", to_hex(s)),
                PhpValue::Arr(a) => php_text(a),
            };
            format!("{}:{v}", to_hex(&k.to_bytes()))
        })
        .collect();
    format!("A{{{}}}", items.join(","))
}

/// `L[name=value,…]` (hex of the UTF-8) or `E`.
pub fn qsl_text(r: &Result<Vec<(String, String)>, TooManyFields>) -> String {
    match r {
        Err(_) => "E".to_string(),
        Ok(pairs) => {
            let items: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{}={}", to_hex(k.as_bytes()), to_hex(v.as_bytes())))
                .collect();
            format!("L[{}]", items.join(","))
        }
    }
}

/// `D{key:[value,…],…}` (hex of the UTF-8) or `E`.
pub fn django_text(r: &Result<Vec<(String, Vec<String>)>, TooManyFields>) -> String {
    match r {
        Err(_) => "E".to_string(),
        Ok(dict) => {
            let items: Vec<String> = dict
                .iter()
                .map(|(k, vs)| {
                    let vs: Vec<String> = vs.iter().map(|v| to_hex(v.as_bytes())).collect();
                    format!("{}:[{}]", to_hex(k.as_bytes()), vs.join(","))
                })
                .collect();
            format!("D{{{}}}", items.join(","))
        }
    }
}
