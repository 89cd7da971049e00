//! One connection to the Redis server that rides out its restarts: a
//! command that fails because the server is unreachable (or still loading
//! its data after a restart) is sent again on a new connection, until the
//! outage has lasted longer than its bound; then it fails with
//! [`Error::Redis`].

use std::time::{Duration, Instant};

use redis::{ErrorKind, FromRedisValue, Value};

use super::wire::Fields;
use crate::error::Error;

/// Longest a read waits for the server; blocking reads ask for less.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a blocking read (`XREAD ... BLOCK`) waits, so that the
/// threads that use one notice a stop within this.
pub(crate) const BLOCK: Duration = Duration::from_millis(500);

/// Says when to stop riding out an outage (the pool or host is stopping).
pub(crate) type Abort = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// A connection that reconnects.
pub(crate) struct Link {
    client: redis::Client,
    con: Option<redis::Connection>,
    url: String,
    outage: Duration,
    abort: Option<Abort>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// `url` with its password (if any) hidden, for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    let mut shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***{}", &url[..scheme], &url[at..]),
        _ => url.to_owned(),
    };
    // A unix socket's password is a query parameter: `?user=u&pass=p`.
    if let Some(query) = shown.find('?') {
        let hidden: Vec<String> = shown[query + 1..]
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("pass", _)) => "pass=***".to_owned(),
                _ => pair.to_owned(),
            })
            .collect();
        shown = format!("{}?{}", &shown[..query], hidden.join("&"));
    }
    shown
}

impl Link {
    /// Connects to the server at `url` now.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when the URL is malformed or the server cannot be
    /// reached or refuses the credentials.
    pub(crate) fn open(url: &str, outage: Duration) -> Result<Link, Error> {
        let shown = redacted(url);
        let client = redis::Client::open(url).map_err(|e| Error::Redis {
            url: shown.clone(),
            message: format!("is not a usable Redis URL: {e} (use redis://[user:password@]host:port/db, rediss:// for TLS, or unix:///path/to/socket)"),
        })?;
        let mut link = Link {
            client,
            con: None,
            url: shown,
            outage,
            abort: None,
        };
        if let Err(e) = link.connect() {
            return Err(link.error(&format!(
                "could not be reached: {e} (check the URL, that the server runs, and the password)"
            )));
        }
        Ok(link)
    }

    /// Another connection to the same server (for another thread).
    pub(crate) fn another(&self) -> Result<Link, Error> {
        let mut link = Link {
            client: self.client.clone(),
            con: None,
            url: self.url.clone(),
            outage: self.outage,
            abort: self.abort.clone(),
        };
        if let Err(e) = link.connect() {
            return Err(link.error(&format!(
                "could not be reached: {e} (check the URL, that the server runs, and the password)"
            )));
        }
        Ok(link)
    }

    /// From now on (and in [`another`](Self::another) link made from this
    /// one), an outage is not ridden out once `abort` says so: a stopping
    /// pool or host does not wait for a server that is gone.
    pub(crate) fn abort_when(&mut self, abort: Abort) {
        self.abort = Some(abort);
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, message: &str) -> Error {
        Error::Redis {
            url: self.url.clone(),
            message: message.to_owned(),
        }
    }

    fn connect(&mut self) -> redis::RedisResult<&mut redis::Connection> {
        if self.con.is_none() {
            let con = self.client.get_connection_with_timeout(READ_TIMEOUT)?;
            con.set_read_timeout(Some(READ_TIMEOUT))?;
            con.set_write_timeout(Some(READ_TIMEOUT))?;
            self.con = Some(con);
        }
        Ok(self.con.as_mut().expect("just connected"))
    }

    /// Runs `op` on the connection, again on a new one while the server is
    /// unreachable, for at most the outage bound.
    fn retrying<T>(
        &mut self,
        mut op: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let mut since: Option<Instant> = None;
        let mut pause = Duration::from_millis(20);
        loop {
            let result = self.connect().and_then(&mut op);
            match result {
                Ok(value) => {
                    if since.is_some() {
                        tracing::info!(url = %self.url, "reconnected to Redis");
                    }
                    return Ok(value);
                }
                Err(e) if passing(&e) => {
                    self.con = None;
                    let first = *since.get_or_insert_with(|| {
                        tracing::warn!(url = %self.url, error = %e, "lost Redis; reconnecting");
                        Instant::now()
                    });
                    if self.abort.as_ref().is_some_and(|abort| abort()) {
                        return Err(self.error(&format!("is unreachable ({e}), and this end is stopping")));
                    }
                    if first.elapsed() >= self.outage {
                        return Err(self.error(&format!(
                            "has been unreachable for {:?}, longer than the outage bound ({e}); check that it runs, or raise PoolBuilder::redis_outage",
                            first.elapsed()
                        )));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(self.error(&format!("refused a command: {e}"))),
            }
        }
    }

    /// Sends one command.
    ///
    /// # Errors
    ///
    /// [`Error::Redis`] when the server refuses it or stays unreachable.
    pub(crate) fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, Error> {
        self.retrying(|con| cmd.query(con))
    }

    /// Sends a pipeline in one round trip.
    ///
    /// # Errors
    ///
    /// As [`query`](Self::query).
    pub(crate) fn pipe<T: FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> Result<T, Error> {
        self.retrying(|con| pipe.query(con))
    }
}

/// Whether an error is the server being away (down, restarting, loading),
/// worth a new connection, rather than a refused command.
fn passing(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(
            e.kind(),
            ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                | ErrorKind::Server(redis::ServerErrorKind::TryAgain)
        )
}

/// One stream entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Fields,
}

/// The text of a string answer.
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The entries of a list of `[id, [field, value, ...]]` (from `XRANGE`,
/// `XAUTOCLAIM`, or one stream of `XREAD`). Fields other than the three of
/// [`Fields`] are ignored; a missing one is left empty (and so fails its
/// seal).
pub(crate) fn entries(value: Value) -> Vec<Entry> {
    let Value::Array(list) = value else {
        return Vec::new();
    };
    let mut found = Vec::with_capacity(list.len());
    for entry in list {
        let Value::Array(parts) = entry else { continue };
        let mut parts = parts.into_iter();
        let (Some(id), Some(Value::Array(pairs))) = (parts.next().as_ref().and_then(text), parts.next())
        else {
            continue;
        };
        // The values are moved out, not copied: a body may be large.
        let mut fields = Fields::default();
        let mut pairs = pairs.into_iter();
        while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
            let (Value::BulkString(name), Value::BulkString(value)) = (name, value) else {
                continue;
            };
            match name.as_slice() {
                b"h" => fields.header = value,
                b"b" => fields.body = value,
                b"s" => fields.seal = value,
                _ => {}
            }
        }
        found.push(Entry { id, fields });
    }
    found
}

/// The entries of the first stream of an `XREAD`/`XREADGROUP` answer
/// (`Nil` when the block timed out).
pub(crate) fn read_entries(value: Value) -> Vec<Entry> {
    let stream = match value {
        Value::Array(streams) => streams.into_iter().next().and_then(|stream| match stream {
            Value::Array(parts) => parts.into_iter().nth(1),
            _ => None,
        }),
        Value::Map(streams) => streams.into_iter().next().map(|(_, list)| list),
        _ => None,
    };
    stream.map(entries).unwrap_or_default()
}

/// The ids in an answer's list (as `XAUTOCLAIM`'s deleted ids).
pub(crate) fn ids(value: &Value) -> Vec<String> {
    match value {
        Value::Array(list) => list.iter().filter_map(text).collect(),
        _ => Vec::new(),
    }
}

/// Appends the `XADD` of an entry to `pipe`.
pub(crate) fn xadd(pipe: &mut redis::Pipeline, stream: &str, maxlen: Option<usize>, fields: &Fields) {
    xadd_noted(pipe, stream, maxlen, &[], fields);
}

/// Appends the `XADD` of an entry with `notes` (name, text) before its
/// fields (a dead letter's reason) to `pipe`.
pub(crate) fn xadd_noted(
    pipe: &mut redis::Pipeline,
    stream: &str,
    maxlen: Option<usize>,
    notes: &[(&str, &str)],
    fields: &Fields,
) {
    let cmd = pipe.cmd("XADD").arg(stream);
    if let Some(max) = maxlen {
        cmd.arg("MAXLEN").arg("~").arg(max);
    }
    cmd.arg("*");
    for (name, text) in notes {
        cmd.arg(*name).arg(*text);
    }
    cmd.arg("h")
        .arg(&fields.header[..])
        .arg("b")
        .arg(&fields.body[..])
        .arg("s")
        .arg(&fields.seal[..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_from_messages() {
        assert_eq!(redacted("redis://user:pw@host:6379/0"), "redis://***@host:6379/0");
        assert_eq!(redacted("redis://host:6379"), "redis://host:6379");
        assert_eq!(redacted("unix:///tmp/r.sock"), "unix:///tmp/r.sock");
        assert_eq!(
            redacted("unix:///tmp/r.sock?user=u&pass=pw&db=1"),
            "unix:///tmp/r.sock?user=u&pass=***&db=1"
        );
    }

    #[test]
    fn entries_are_read_from_a_stream_answer() {
        let bulk = |s: &[u8]| Value::BulkString(s.to_vec());
        let entry = Value::Array(vec![
            bulk(b"1-0"),
            Value::Array(vec![
                bulk(b"h"),
                bulk(b"H"),
                bulk(b"b"),
                bulk(b"B"),
                bulk(b"s"),
                bulk(b"S"),
                bulk(b"x"),
                bulk(b"X"),
            ]),
        ]);
        let answer = Value::Array(vec![Value::Array(vec![
            bulk(b"stream"),
            Value::Array(vec![entry, Value::Nil]),
        ])]);
        let found = read_entries(answer);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "1-0");
        assert_eq!(
            found[0].fields,
            Fields {
                header: b"H".to_vec(),
                body: b"B".to_vec(),
                seal: b"S".to_vec()
            }
        );
        assert!(read_entries(Value::Nil).is_empty());
    }
}
