//! Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for tests of the
//! web page as a browser runs it: load a URL, wait for what the script renders, type, press
//! keys, answer a confirmation dialog, take screenshots, read the page's timings.
//!
//! No driver, no npm, no new crate: Chromium listens for DevTools on a loopback port of its
//! own choosing (written to `DevToolsActivePort` in its fresh profile directory), and this
//! module speaks the few WebSocket frames the protocol needs over a `TcpStream`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use super::tools;

/// The flags the lab's machines need: no sandbox as root, and no network beyond loopback
/// (Chromium's background connections are refused here, and slow it down).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
];

pub struct Browser {
    child: Child,
    ws: Ws,
    next_id: u64,
    /// Events received while waiting for answers (dialogs, mostly).
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium on `about:blank`; `None` (the test skips) when it is not installed,
    /// a failure under ATOLL_E2E=require.
    pub fn start() -> Option<Browser> {
        if !tools::have("chromium") {
            return None;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let child = Command::new("chromium")
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromium");
        let port = devtools_port(profile.path());
        let page = page_socket(port);
        let ws = Ws::connect(port, &page);
        let mut b = Browser {
            child,
            ws,
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        Some(b)
    }

    /// Sends one DevTools command and returns its result (panics on a protocol error).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.ws
            .send(&json!({ "id": id, "method": method, "params": params }).to_string());
        loop {
            let msg: Value = serde_json::from_str(&self.ws.recv()).expect("DevTools JSON");
            if msg["id"] == id {
                if let Some(e) = msg.get("error") {
                    panic!("{method}: {e}");
                }
                return msg["result"].clone();
            }
            self.events.push(msg);
        }
    }

    /// Loads `url` and waits for its `load` event.
    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        );
    }

    /// Evaluates a JavaScript expression in the page (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy.
    #[track_caller]
    pub fn wait_for(&mut self, expr: &str, limit: Duration) {
        let end = Instant::now() + limit;
        loop {
            let v = self.eval(&format!("!!({expr})"));
            if v == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < end, "waited {limit:?} for: {expr}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The page's text as a user reads it.
    pub fn text(&mut self, selector: &str) -> String {
        let sel = serde_json::to_string(selector).unwrap();
        self.eval(&format!(
            "(document.querySelector({sel}) || {{innerText: ''}}).innerText"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Types text into the focused element, as an input method commits it.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({ "text": text }));
    }

    /// Presses and releases a key (`Tab`, `Enter`, `/`...).
    pub fn press(&mut self, key: &str) {
        let (code, vk, text) = match key {
            "Tab" => ("Tab", 9, ""),
            "Enter" => ("Enter", 13, "\r"),
            "Escape" => ("Escape", 27, ""),
            "/" => ("Slash", 191, "/"),
            other => panic!("no key code for {other}"),
        };
        let mut down = json!({ "type": "keyDown", "key": key, "code": code,
            "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk });
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": code,
                "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk }),
        );
    }

    /// Answers the JavaScript dialog that opens (confirm: accept or dismiss). Open it from a
    /// timer (`setTimeout(() => b.click())`): a call that waits on the page would wait for the
    /// dialog to close.
    pub fn answer_dialog(&mut self, accept: bool) {
        // The page's script is stopped while the dialog is open: wait for the event itself
        // rather than asking the page anything.
        while !self
            .events
            .iter()
            .any(|e| e["method"] == "Page.javascriptDialogOpening")
        {
            let msg = serde_json::from_str(&self.ws.recv()).expect("DevTools JSON");
            self.events.push(msg);
        }
        self.events
            .retain(|e| e["method"] != "Page.javascriptDialogOpening");
        self.call("Page.handleJavaScriptDialog", json!({ "accept": accept }));
    }

    /// Sets the viewport (CSS pixels); `mobile` emulates a phone's.
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// A PNG of the viewport (or of the whole page), written to `path`.
    pub fn screenshot(&mut self, path: &Path, full_page: bool) {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": full_page }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools port Chromium chose, from the profile's `DevToolsActivePort`.
fn devtools_port(profile: &Path) -> u16 {
    let file = profile.join("DevToolsActivePort");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            return port;
        }
        assert!(Instant::now() < end, "chromium wrote no DevToolsActivePort");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The WebSocket path of the first page target.
fn page_socket(port: u16) -> String {
    // Chromium answers HTTP/1.1 only (an HTTP/1.0 request gets nothing back).
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("DevTools HTTP");
    write!(
        s,
        "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().expect("Content-Length");
            }
        }
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    let targets: Value = serde_json::from_slice(&body).expect("DevTools target list");
    let url = targets
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["type"] == "page"))
        .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        .expect("a page target")
        .to_owned();
    let path = url.splitn(4, '/').nth(3).expect("ws URL path");
    format!("/{path}")
}

/// A WebSocket client: text frames out (masked, as clients must), frames in.
struct Ws {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Ws {
    fn connect(port: u16, path: &str) -> Ws {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("DevTools socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: YXRvbGwtdWktdGVzdHMtMQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.contains(" 101 "), "WebSocket upgrade: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Ws { stream, reader }
    }

    fn send(&mut self, text: &str) {
        self.frame(0x1, text.as_bytes());
    }

    fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x5a, 0x17, 0xc3, 0x08];
        let mut f = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 0xffff => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&f).unwrap();
    }

    /// The next whole text message (continuation frames joined, pings answered).
    fn recv(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.reader.read_exact(&mut head).expect("DevTools frame");
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => {
                    let mut b = [0u8; 2];
                    self.reader.read_exact(&mut b).unwrap();
                    u16::from_be_bytes(b) as usize
                }
                127 => {
                    let mut b = [0u8; 8];
                    self.reader.read_exact(&mut b).unwrap();
                    u64::from_be_bytes(b) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; len];
            self.reader.read_exact(&mut payload).unwrap();
            match opcode {
                0x9 => self.frame(0xA, &payload),
                0x8 => panic!("chromium closed the DevTools socket"),
                0x0..=0x2 => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("UTF-8 message");
                    }
                }
                _ => {}
            }
        }
    }
}
