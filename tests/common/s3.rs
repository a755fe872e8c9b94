//! A real S3-compatible server for the tests: moto's server (PyPI `moto[server]`), started on a
//! free port of 127.0.0.1 and stopped when dropped; installed into a virtualenv when missing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The virtualenv `.ci/run` installs moto into; the tests install it there too when missing.
fn moto_server() -> PathBuf {
    static INSTALLED: OnceLock<PathBuf> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("IODRIFT_MOTO_SERVER") {
                return PathBuf::from(path);
            }
            let home = std::env::var_os("HOME").expect("HOME is set");
            let venv = PathBuf::from(home).join(".cache/iodrift-moto");
            let server = venv.join("bin/moto_server");
            if !server.exists() {
                let run = |program: &str, args: &[&str]| {
                    let status = Command::new(program)
                        .args(args)
                        .status()
                        .unwrap_or_else(|e| panic!("cannot run {program} to install moto: {e}"));
                    assert!(status.success(), "{program} {args:?} failed: {status}");
                };
                let venv_text = venv.to_str().expect("a UTF-8 path");
                run("python3", &["-m", "venv", venv_text]);
                run(
                    venv.join("bin/pip").to_str().expect("a UTF-8 path"),
                    &["install", "--quiet", "moto[server]"],
                );
            }
            server
        })
        .clone()
}

/// A running moto server.
pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
}

/// Credentials moto accepts (it checks none); the AWS variables every command gets.
pub const CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "iodrift-test"),
    ("AWS_SECRET_ACCESS_KEY", "iodrift-test"),
    ("AWS_REGION", "us-east-1"),
];

const AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=iodrift-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

impl S3Server {
    pub fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.request("GET", "/", b"").is_err() {
            assert!(Instant::now() < deadline, "moto_server did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The endpoint for `--s3-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server, as a crash or an outage would.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self
            .request("PUT", &format!("/{bucket}"), b"")
            .expect("create bucket");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }

    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, reply) = self
            .request("PUT", &format!("/{bucket}/{key}"), body)
            .expect("put object");
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
    }

    /// The object's bytes, or `None` when there is none.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self
            .request("GET", &format!("/{bucket}/{key}"), b"")
            .expect("get object");
        (status == 200).then_some(body)
    }

    /// The keys under `prefix`, from a ListObjectsV2 reply.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let (status, body) = self
            .request(
                "GET",
                &format!("/{bucket}?list-type=2&max-keys=1000&prefix={prefix}"),
                b"",
            )
            .expect("list objects");
        assert_eq!(status, 200);
        let text = String::from_utf8(body).expect("XML");
        text.split("<Key>")
            .skip(1)
            .map(|rest| rest.split("</Key>").next().unwrap_or("").to_string())
            .collect()
    }

    /// One plain HTTP/1.1 request: status and body. Moto checks no signature, but treats a
    /// request without credentials as anonymous, which may not read objects.
    fn request(&self, method: &str, target: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Authorization: {AUTHORIZATION}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        )?;
        stream.write_all(body)?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        let split = reply
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no HTTP header"))?;
        let head = String::from_utf8_lossy(&reply[..split]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
        let mut body = reply[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        Ok((status, body))
    }
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy in front of a server that answers its first `failures` connections with
/// `503 Slow Down` and closes them, as S3 does under load, then forwards every byte.
pub struct FlakyProxy {
    pub port: u16,
    failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyProxy {
    pub fn start(target: u16, failures: usize) -> FlakyProxy {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("a bound port").port();
        let failed = Arc::new(AtomicUsize::new(0));
        let counter = failed.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                if counter.load(Ordering::SeqCst) < failures {
                    counter.fetch_add(1, Ordering::SeqCst);
                    read_request_head(&mut client);
                    let _ = client.write_all(
                        b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        FlakyProxy { port, failed }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Connections answered with 503 so far.
    pub fn failed(&self) -> usize {
        self.failed.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn read_request_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
        head.push(byte[0]);
    }
}
