//! A scripted local SMTP server that records each message it accepts, the
//! way a real mail server would receive it (envelope and DATA).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// How the server answers one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Takes the message.
    Accept,
    /// `421` at the greeting: busy, try again later.
    Busy,
    /// `550` for every recipient: no such mailbox.
    NoMailbox,
}

/// One accepted message: envelope sender, recipients, and the DATA text.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// Messages the server accepted, and how many connections it saw.
pub type Received = Arc<Mutex<(Vec<Mail>, usize)>>;

/// Answers one connection per entry of `script`; returns the port.
pub fn smtp_server(script: Vec<Answer>) -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let received: Received = Arc::new(Mutex::new((Vec::new(), 0)));
    let record = received.clone();
    std::thread::spawn(move || {
        for (stream, answer) in listener.incoming().zip(script) {
            let Ok(mut stream) = stream else { return };
            record.lock().expect("lock").1 += 1;
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            if answer == Answer::Busy {
                let _ = stream.write_all(b"421 4.3.2 busy, try later\r\n");
                continue;
            }
            let _ = stream.write_all(b"220 mail.test ESMTP\r\n");
            let mut mail = Mail::default();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let command = line.trim_end().to_string();
                let upper = command.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                    b"250-mail.test\r\n250 8BITMIME\r\n"
                } else if upper.starts_with("MAIL FROM:") {
                    mail.from = command[10..].trim().to_string();
                    b"250 2.1.0 ok\r\n"
                } else if upper.starts_with("RCPT TO:") {
                    if answer == Answer::NoMailbox {
                        b"550 5.1.1 no such mailbox\r\n"
                    } else {
                        mail.to.push(command[8..].trim().to_string());
                        b"250 2.1.5 ok\r\n"
                    }
                } else if upper == "DATA" {
                    let _ = stream.write_all(b"354 end with <CRLF>.<CRLF>\r\n");
                    let mut data = String::new();
                    loop {
                        let mut l = String::new();
                        if reader.read_line(&mut l).unwrap_or(0) == 0 || l == ".\r\n" {
                            break;
                        }
                        data.push_str(&l);
                    }
                    mail.data = data;
                    record
                        .lock()
                        .expect("lock")
                        .0
                        .push(std::mem::take(&mut mail));
                    b"250 2.0.0 queued\r\n"
                } else if upper == "QUIT" {
                    let _ = stream.write_all(b"221 2.0.0 bye\r\n");
                    break;
                } else if upper == "RSET" || upper == "NOOP" {
                    b"250 ok\r\n"
                } else {
                    b"502 5.5.2 not implemented\r\n"
                };
                let _ = stream.write_all(reply);
            }
        }
    });
    (port, received)
}
