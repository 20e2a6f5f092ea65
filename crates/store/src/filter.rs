//! The dynamic `WHERE` of the list queries: conditions joined by `AND`, each with its bound
//! arguments numbered in order, then keyset paging.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

enum Arg {
    S(String),
    I(i64),
}

#[derive(Default)]
pub(crate) struct Filter {
    args: Vec<Arg>,
    conds: Vec<String>,
}

impl Filter {
    /// Binds a text argument and returns its placeholder (`$n`).
    pub(crate) fn text(&mut self, v: impl ToString) -> String {
        self.args.push(Arg::S(v.to_string()));
        format!("${}", self.args.len())
    }

    /// Binds an integer argument and returns its placeholder.
    pub(crate) fn int(&mut self, v: i64) -> String {
        self.args.push(Arg::I(v));
        format!("${}", self.args.len())
    }

    pub(crate) fn and(&mut self, cond: String) {
        self.conds.push(cond);
    }

    /// `select` with the conditions, ordered by `order` (the keyset column) and limited to
    /// `page_size` (at least 1); the query text and its arguments, to bind with [`bind`].
    pub(crate) fn finish(mut self, select: &str, order: &str, page_size: u32) -> (String, Self) {
        let mut sql = select.to_string();
        if !self.conds.is_empty() {
            sql += " WHERE ";
            sql += &self.conds.join(" AND ");
        }
        let limit = self.int(i64::from(page_size.max(1)));
        sql += &format!(" ORDER BY {order} LIMIT {limit}");
        (sql, self)
    }

    pub(crate) fn bind<'q>(
        self,
        mut q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for a in self.args {
            q = match a {
                Arg::S(s) => q.bind(s),
                Arg::I(i) => q.bind(i),
            };
        }
        q
    }
}
