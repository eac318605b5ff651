//! What can go wrong with the PostgreSQL store. Every message that shows the
//! database's address shows it with the password removed.

/// An error of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database's address is not a PostgreSQL URL.
    #[error("--store {url}: not a PostgreSQL URL (use postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)")]
    BadUrl {
        /// The URL, password removed.
        url: String,
    },
    /// The database did not answer or refused us.
    #[error("cannot reach the database at {url}: {message}")]
    Unreachable {
        /// The URL, password removed.
        url: String,
        /// What the driver said.
        message: String,
    },
    /// The schema could not be brought up to date.
    #[error("cannot apply the schema migrations: {0}")]
    Migrations(String),
    /// The database was migrated by a newer Archon.
    #[error(
        "the database's schema is newer than this binary (it has migration {found}, this binary knows up to {known}): upgrade Archon"
    )]
    SchemaTooNew {
        /// The unknown migration found in the database.
        found: String,
        /// The newest migration this binary has.
        known: String,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    /// A stored command or snapshot cannot be read back.
    #[error("the stored log is unreadable at index {index}: {message}")]
    Corrupt {
        /// The log index.
        index: i64,
        /// Why.
        message: String,
    },
}

/// `url` without its password (and without its query string, which may hold
/// one): `postgres://archon:***@db:5432/archon`.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?…"),
        None => (url, ""),
    };
    let Some((scheme, rest)) = base.split_once("://") else { return format!("{base}{query}") };
    let (authority, tail) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{tail}{query}")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("postgres://archon:s3cret@db:5432/archon"), "postgres://archon:***@db:5432/archon");
        assert_eq!(redact("postgres://archon@db/archon"), "postgres://archon@db/archon");
        assert_eq!(redact("postgres://a:p@ss@db/x"), "postgres://a:***@db/x");
        assert_eq!(redact("postgres://db/x?password=s3cret"), "postgres://db/x?…");
        assert_eq!(redact("not a url"), "not a url");
    }
}
