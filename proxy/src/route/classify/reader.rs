//! The statement-level reader: takes the lexer's tokens, finds the statement's shape from
//! its first keywords, and notes in every token what rules out a replica or pins the
//! session.

use super::lexer::{Escapes, LexError, Lexer, SystemVariableUse, Token};
use super::words::*;
use super::{Class, Hint, Route, TransactionStart};

/// The route a statement's shape allows, before what its tokens forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    /// SELECT, WITH ... SELECT, (SELECT ...): a read unless something in it says otherwise.
    Read,
    /// SHOW WARNINGS and the like.
    Previous,
    Master,
}

/// What a statement's shape says.
#[derive(Debug, Clone, Copy)]
struct Shape {
    candidate: Candidate,
    replay: bool,
    starts: Option<TransactionStart>,
}

impl Shape {
    const MASTER: Shape = Shape::candidate(Candidate::Master);

    const fn candidate(candidate: Candidate) -> Shape {
        Shape {
            candidate,
            replay: false,
            starts: None,
        }
    }
}

/// A token that may turn out to be a call, waiting for the token after it.
#[derive(Debug, Clone, Copy)]
struct Pending<'a> {
    /// `Some` for an unquoted word, `None` for a quoted identifier, a double-quoted string
    /// (an identifier under ANSI_QUOTES) or a number.
    word: Option<(&'a [u8], Keyword, bool)>,
    /// The keyword of the token before it.
    preceded_by: Keyword,
    /// The name of a common table expression: a `(` after it opens a column list.
    cte_name: bool,
}

/// How a statement read under one escape mode classified.
pub(super) struct Outcome {
    /// `None` when the server would reject the text unrun (it is not lexable).
    pub(super) class: Option<Class>,
    pub(super) backslash_in_quotes: bool,
}

/// Statement forms nested inside another (`SET STATEMENT ... FOR <statement>`) at most.
const MAX_NESTING: u32 = 2;

/// The statement-level reader: asks the lexer for tokens, and notes in every token what
/// makes a statement unfit for a replica or pins the session.
pub(super) struct Classifier<'a> {
    lexer: Lexer<'a>,
    /// Something forbids running this statement on a replica.
    master: bool,
    pin: bool,
    /// The statement reads `@@warning_count` or `@@error_count`.
    previous: bool,
    /// A token follows a `;`.
    multi_statement: bool,
    /// A `;` ended the statement.
    ended: bool,
    depth: u32,
    pending: Option<Pending<'a>>,
    /// The keyword of the last token (`Keyword::None` if it was not a keyword).
    last_keyword: Keyword,
    /// The next `:=` is a SET statement's assignment operator, not an expression.
    set_operator_expected: bool,
    nesting: u32,
}

impl<'a> Classifier<'a> {
    pub(super) fn run(sql: &'a [u8], escapes: Escapes) -> Outcome {
        let mut classifier = Classifier {
            lexer: Lexer::new(sql, escapes),
            master: false,
            pin: false,
            previous: false,
            multi_statement: false,
            ended: false,
            depth: 0,
            pending: None,
            last_keyword: Keyword::None,
            set_operator_expected: false,
            nesting: 0,
        };
        let shape = classifier.statement();
        // Whatever follows the first statement (comments only, or another statement).
        while let Some(token) = classifier.lexer.next() {
            classifier.observe(Some(token));
        }
        classifier.observe(None);
        let hint = classifier.lexer.hint;
        let master_and_pinned = Class {
            route: Route::Master,
            pin: true,
            replay: false,
            starts: None,
            hint,
        };
        let class = match classifier.lexer.error {
            Some(LexError::Ambiguous) => Some(master_and_pinned),
            // Unterminated after a `;`: the statements before it may have run.
            Some(LexError::Unterminated) if classifier.ended => Some(master_and_pinned),
            Some(LexError::Unterminated) => None,
            None if classifier.multi_statement => Some(master_and_pinned),
            None => Some(classifier.class(shape, hint)),
        };
        Outcome {
            class,
            backslash_in_quotes: classifier.lexer.backslash_in_quotes,
        }
    }

    fn class(&self, shape: Shape, hint: Option<Hint>) -> Class {
        let route = match shape.candidate {
            _ if self.master => Route::Master,
            Candidate::Master => Route::Master,
            Candidate::Previous => Route::Previous,
            Candidate::Read if self.previous => Route::Previous,
            Candidate::Read => Route::Read,
        };
        Class {
            route,
            pin: self.pin,
            replay: shape.replay,
            starts: shape.starts,
            hint,
        }
    }

    /// The next token of the current statement (`None` at its `;` or at the end).
    fn next(&mut self) -> Option<Token<'a>> {
        if self.ended {
            return None;
        }
        let token = self.lexer.next();
        self.observe(token);
        match token {
            Some(Token::Semicolon) => {
                self.ended = true;
                None
            }
            other => other,
        }
    }

    /// Consumes the rest of the current statement.
    fn drain(&mut self) {
        while self.next().is_some() {}
    }

    /// Consumes the rest of the current statement; pins the session if one of `keywords`
    /// appears in it.
    fn drain_pinning_on(&mut self, keywords: &[Keyword]) {
        while let Some(token) = self.next() {
            if let Token::Word {
                keyword,
                after_dot: false,
                ..
            } = token
            {
                if keywords.contains(&keyword) {
                    self.pin = true;
                }
            }
        }
    }

    /// Notes what one token (or the end, `None`) says, whatever the statement.
    fn observe(&mut self, token: Option<Token<'a>>) {
        if let Some(pending) = self.pending.take() {
            self.judge(pending, token);
        }
        let Some(token) = token else {
            return;
        };
        if self.ended {
            self.multi_statement = true;
        }
        let preceded_by = self.last_keyword;
        self.last_keyword = Keyword::None;
        match token {
            Token::Open => self.depth += 1,
            Token::Close => self.depth = self.depth.saturating_sub(1),
            Token::Assign if !self.set_operator_expected => {
                // `@x := ...`: a user variable assigned from a query cannot be replayed.
                self.master = true;
                self.pin = true;
            }
            Token::SystemVariable { usage, .. } => match usage {
                SystemVariableUse::MasterOnly => self.master = true,
                SystemVariableUse::PreviousStatement => self.previous = true,
                SystemVariableUse::Plain => {}
            },
            Token::Word {
                text,
                keyword,
                after_dot,
            } => {
                if !after_dot {
                    self.last_keyword = keyword;
                }
                self.pending = Some(Pending {
                    word: Some((text, keyword, after_dot)),
                    preceded_by,
                    cte_name: false,
                });
            }
            Token::QuotedIdentifier
            | Token::Text {
                double_quoted: true,
            }
            | Token::Number => {
                self.pending = Some(Pending {
                    word: None,
                    preceded_by,
                    cte_name: false,
                });
            }
            _ => {}
        }
    }

    /// Decides about a word (or name) now that the token after it (`next`) is known.
    fn judge(&mut self, pending: Pending<'a>, next: Option<Token<'a>>) {
        let next_is_open = matches!(next, Some(Token::Open));
        let next_keyword = match next {
            Some(Token::Word {
                keyword,
                after_dot: false,
                ..
            }) => keyword,
            _ => Keyword::None,
        };
        let Some((text, keyword, after_dot)) = pending.word else {
            // `` `name`( ``, `"name"(`, `1abc(`: a stored or user-defined function.
            if next_is_open && !pending.cte_name {
                self.master = true;
            }
            return;
        };
        if after_dot {
            // `schema.function(` is a stored function; `sequence.nextval` (Oracle mode)
            // advances a sequence.
            if next_is_open
                || matches!(
                    keyword,
                    Keyword::Nextval | Keyword::Currval | Keyword::Lastval
                )
            {
                self.master = true;
            }
            return;
        }
        if next_is_open && !pending.cte_name {
            if keyword == Keyword::GetLock {
                self.pin = true;
            }
            if !allowed_before_parenthesis(text) {
                self.master = true;
            }
            return;
        }
        match keyword {
            Keyword::Insert
            | Keyword::Update
            | Keyword::Delete
            | Keyword::Replace
            | Keyword::Create
            | Keyword::Alter
            | Keyword::Drop
            | Keyword::Truncate
            | Keyword::Rename
            | Keyword::Grant
            | Keyword::Revoke
            | Keyword::Load
            | Keyword::Call
            | Keyword::Do
            | Keyword::Handler
            | Keyword::Lock
            | Keyword::Unlock
            | Keyword::Nowait => self.master = true,
            // `CAST(x AS CHAR CHARACTER SET utf8mb4)` is not a SET statement.
            Keyword::Set if pending.preceded_by != Keyword::Character => self.master = true,
            Keyword::Into => {
                self.master = true;
                if matches!(next, Some(Token::UserVariable)) {
                    self.pin = true;
                }
            }
            Keyword::SqlCalcFoundRows => {
                self.master = true;
                self.pin = true;
            }
            Keyword::Next | Keyword::Previous if next_keyword == Keyword::Value => {
                self.master = true
            }
            Keyword::Skip if next_keyword == Keyword::Locked => self.master = true,
            Keyword::For if matches!(next_keyword, Keyword::Share | Keyword::Update) => {
                self.master = true
            }
            _ => {}
        }
    }

    /// Reads one statement (up to its `;` or the end) and says what its shape allows.
    fn statement(&mut self) -> Shape {
        let mut parenthesized = false;
        let first = loop {
            match self.next() {
                Some(Token::Open) => parenthesized = true,
                Some(Token::Word { keyword, .. }) => break keyword,
                _ => {
                    self.drain();
                    return Shape::MASTER;
                }
            }
        };
        let shape = match first {
            Keyword::Select => Shape::candidate(Candidate::Read),
            Keyword::With => {
                self.with_clause();
                Shape::candidate(Candidate::Read)
            }
            _ if parenthesized => Shape::MASTER,
            Keyword::Show => Shape::candidate(self.show()),
            Keyword::Set => self.set_statement(),
            Keyword::Start => Shape {
                starts: self.start_transaction(),
                ..Shape::MASTER
            },
            Keyword::Begin => Shape {
                starts: self.begin(),
                ..Shape::MASTER
            },
            Keyword::Create => {
                self.drain_pinning_on(&[Keyword::Temporary]);
                Shape::MASTER
            }
            // FLUSH TABLES WITH READ LOCK, FLUSH TABLES t FOR EXPORT.
            Keyword::Flush => {
                self.drain_pinning_on(&[Keyword::Lock, Keyword::Export]);
                Shape::MASTER
            }
            // Table locks, HANDLER cursors, SQL-level prepared statements (and EXECUTE
            // IMMEDIATE), BACKUP LOCK / BACKUP STAGE, and stored procedures (which may do
            // any of these) all live in the master session.
            Keyword::Lock
            | Keyword::Handler
            | Keyword::Prepare
            | Keyword::Execute
            | Keyword::Backup
            | Keyword::Call => {
                self.pin = true;
                Shape::MASTER
            }
            _ => Shape::MASTER,
        };
        self.drain();
        shape
    }

    /// `WITH [RECURSIVE] name [(columns)] AS (...) [, ...]` up to the main statement, which
    /// must be a SELECT.
    fn with_clause(&mut self) {
        let base = self.depth;
        let mut token = self.next();
        if matches!(
            token,
            Some(Token::Word {
                keyword: Keyword::Recursive,
                ..
            })
        ) {
            token = self.next();
        }
        loop {
            if !matches!(token, Some(Token::Word { .. } | Token::QuotedIdentifier)) {
                self.master = true;
                return;
            }
            if let Some(pending) = &mut self.pending {
                pending.cte_name = true;
            }
            token = self.next();
            if matches!(token, Some(Token::Open)) {
                if !self.skip_to_depth(base) {
                    return;
                }
                token = self.next();
            }
            let as_keyword = matches!(
                token,
                Some(Token::Word {
                    keyword: Keyword::As,
                    ..
                })
            );
            if !as_keyword || !matches!(self.next(), Some(Token::Open)) {
                self.master = true;
                return;
            }
            if !self.skip_to_depth(base) {
                return;
            }
            match self.next() {
                Some(Token::Comma) => token = self.next(),
                Some(Token::Open)
                | Some(Token::Word {
                    keyword: Keyword::Select,
                    ..
                }) => return,
                _ => {
                    self.master = true;
                    return;
                }
            }
        }
    }

    /// Consumes tokens until a `)` brings the depth back to `base`; false (and Master) if
    /// the statement ends first.
    fn skip_to_depth(&mut self, base: u32) -> bool {
        loop {
            match self.next() {
                Some(Token::Close) if self.depth == base => return true,
                Some(_) => {}
                None => {
                    self.master = true;
                    return false;
                }
            }
        }
    }

    /// `SHOW WARNINGS|ERRORS [LIMIT ...]`, `SHOW COUNT(*) WARNINGS|ERRORS`: Previous;
    /// every other SHOW: Master.
    fn show(&mut self) -> Candidate {
        let warnings_or_errors = |token: Option<Token>| {
            matches!(
                token,
                Some(Token::Word {
                    keyword: Keyword::Warnings | Keyword::Errors,
                    ..
                })
            )
        };
        let shape_fits = match self.next() {
            token if warnings_or_errors(token) => match self.next() {
                None => true,
                Some(Token::Word {
                    keyword: Keyword::Limit,
                    ..
                }) => {
                    let mut any = false;
                    loop {
                        match self.next() {
                            None => break any,
                            Some(
                                Token::Number
                                | Token::Comma
                                | Token::Word {
                                    keyword: Keyword::Offset,
                                    ..
                                },
                            ) => any = true,
                            Some(_) => break false,
                        }
                    }
                }
                Some(_) => false,
            },
            Some(Token::Word {
                keyword: Keyword::Count,
                ..
            }) => {
                matches!(self.next(), Some(Token::Open))
                    && matches!(self.next(), Some(Token::Star))
                    && matches!(self.next(), Some(Token::Close))
                    && warnings_or_errors(self.next())
                    && self.next().is_none()
            }
            _ => false,
        };
        if shape_fits {
            Candidate::Previous
        } else {
            Candidate::Master
        }
    }

    /// `START TRANSACTION [READ ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT] [, ...]`:
    /// which kind of transaction it starts (`None` for other `START` statements).
    fn start_transaction(&mut self) -> Option<TransactionStart> {
        if !matches!(
            self.next(),
            Some(Token::Word {
                keyword: Keyword::Transaction,
                ..
            })
        ) {
            return None;
        }
        Some(if self.read_only_characteristics() {
            TransactionStart::ReadOnly
        } else {
            TransactionStart::ReadWrite
        })
    }

    /// `BEGIN` or `BEGIN WORK` starts a transaction; `BEGIN NOT ATOMIC` (a compound
    /// statement) does not.
    fn begin(&mut self) -> Option<TransactionStart> {
        match self.next() {
            None => Some(TransactionStart::ReadWrite),
            Some(Token::Word {
                keyword: Keyword::Work,
                ..
            }) if self.next().is_none() => Some(TransactionStart::ReadWrite),
            Some(_) => None,
        }
    }

    /// The characteristics after `START TRANSACTION`: whether they make it read-only
    /// (and are well formed).
    fn read_only_characteristics(&mut self) -> bool {
        let mut read_only = false;
        let mut read_write = false;
        let mut expect_characteristic = true;
        while let Some(token) = self.next() {
            let Token::Word { keyword, .. } = token else {
                if matches!(token, Token::Comma) && !expect_characteristic {
                    expect_characteristic = true;
                    continue;
                }
                return false;
            };
            if !expect_characteristic {
                return false;
            }
            expect_characteristic = false;
            let second = match self.next() {
                Some(Token::Word { keyword, .. }) => keyword,
                _ => return false,
            };
            match (keyword, second) {
                (Keyword::Read, Keyword::Only) => read_only = true,
                (Keyword::Read, Keyword::Write) => read_write = true,
                (Keyword::With, Keyword::Consistent) => {
                    if !matches!(
                        self.next(),
                        Some(Token::Word {
                            keyword: Keyword::Snapshot,
                            ..
                        })
                    ) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        read_only && !read_write && !expect_characteristic
    }

    /// `SET ...`: replayable when it assigns user variables, all from literals, and
    /// nothing else in it is more than a literal or a word; pins the session when it
    /// assigns user variables otherwise.
    fn set_statement(&mut self) -> Shape {
        let base = self.depth;
        let mut token = self.next();
        if let Some(shape) = self.set_other_than_variables(token, base) {
            return shape;
        }
        let mut user_assigned = false;
        let mut replayable = true;
        loop {
            if let Some(Token::Word {
                keyword: scope @ (Keyword::Global | Keyword::Session | Keyword::Local),
                ..
            }) = token
            {
                // Replaying SET GLOBAL on a replica would change the replica.
                if scope == Keyword::Global {
                    replayable = false;
                }
                token = self.next();
                if matches!(
                    token,
                    Some(Token::Word {
                        keyword: Keyword::Transaction,
                        ..
                    })
                ) {
                    return Shape::MASTER;
                }
            }
            let mut user_variable = false;
            let (value, more) = match token {
                Some(Token::Word {
                    keyword: Keyword::Names | Keyword::Charset,
                    ..
                }) => self.charset_clause(base),
                Some(Token::Word {
                    keyword: Keyword::Character,
                    ..
                }) => {
                    if matches!(
                        self.next(),
                        Some(Token::Word {
                            keyword: Keyword::Set,
                            ..
                        })
                    ) {
                        self.charset_clause(base)
                    } else {
                        (Value::Complex, self.skip_to_comma(base))
                    }
                }
                Some(Token::UserVariable) => {
                    user_variable = true;
                    self.assignment(base)
                }
                Some(Token::SystemVariable { global, usage }) => {
                    if global || usage != SystemVariableUse::Plain {
                        replayable = false;
                    }
                    self.assignment(base)
                }
                Some(Token::Word {
                    after_dot: false, ..
                }) => self.assignment(base),
                _ => (Value::Complex, self.skip_to_comma(base)),
            };
            if user_variable {
                user_assigned = true;
                if value != Value::Literal {
                    replayable = false;
                }
            } else if !matches!(value, Value::Literal | Value::Word) {
                replayable = false;
            }
            if !more {
                break;
            }
            token = self.next();
        }
        let replay = user_assigned && replayable;
        if user_assigned && !replayable {
            self.pin = true;
        }
        Shape {
            replay,
            ..Shape::MASTER
        }
    }

    /// SET forms that assign no variable, by their first word `token`: `SET STATEMENT
    /// ... FOR <statement>` (the statement decides), `SET TRANSACTION`, `SET PASSWORD`,
    /// `SET DEFAULT ROLE`, `SET ROLE` (session state the proxy does not replay: pinned).
    /// `None`: variables are assigned.
    fn set_other_than_variables(&mut self, token: Option<Token>, base: u32) -> Option<Shape> {
        let Some(Token::Word { keyword, .. }) = token else {
            return None;
        };
        match keyword {
            Keyword::Statement => {
                while let Some(token) = self.next() {
                    if self.depth == base
                        && matches!(
                            token,
                            Token::Word {
                                keyword: Keyword::For,
                                after_dot: false,
                                ..
                            }
                        )
                    {
                        self.nested_statement();
                        break;
                    }
                }
                Some(Shape::MASTER)
            }
            Keyword::Transaction | Keyword::Password | Keyword::Default => Some(Shape::MASTER),
            Keyword::Role => {
                self.pin = true;
                Some(Shape::MASTER)
            }
            _ => None,
        }
    }

    /// The statement after `SET STATEMENT ... FOR`: its pins count.
    fn nested_statement(&mut self) {
        if self.nesting >= MAX_NESTING {
            self.pin = true;
            return;
        }
        self.nesting += 1;
        self.statement();
        self.nesting -= 1;
    }

    /// After a SET target: the rest of its name, `=` or `:=`, and the value. Returns the
    /// value's kind and whether a `,` (another assignment) follows.
    fn assignment(&mut self, base: u32) -> (Value, bool) {
        loop {
            self.set_operator_expected = true;
            let token = self.next();
            self.set_operator_expected = false;
            match token {
                // A structured variable: `SET hot_cache.key_buffer_size = ...`.
                Some(Token::Dot | Token::Word { .. }) => {}
                Some(Token::Equals | Token::Assign) => break,
                Some(Token::Comma) if self.depth == base => return (Value::Complex, true),
                None => return (Value::Complex, false),
                Some(_) => return (Value::Complex, self.skip_to_comma(base)),
            }
        }
        let mut value = Value::Empty;
        let more = self.for_each_to_comma(base, |token| value = value.then(token));
        (value, more)
    }

    /// `NAMES x [COLLATE y]`, `CHARACTER SET x`: a word if it is only words and strings.
    fn charset_clause(&mut self, base: u32) -> (Value, bool) {
        let mut simple = true;
        let more = self.for_each_to_comma(base, |token| {
            if !matches!(
                token,
                Token::Word {
                    after_dot: false,
                    ..
                } | Token::Text { .. }
            ) {
                simple = false;
            }
        });
        (if simple { Value::Word } else { Value::Complex }, more)
    }

    fn skip_to_comma(&mut self, base: u32) -> bool {
        self.for_each_to_comma(base, |_| {})
    }

    /// Feeds `each` the tokens up to a `,` at depth `base` (true) or the statement's end
    /// (false).
    fn for_each_to_comma(&mut self, base: u32, mut each: impl FnMut(Token<'a>)) -> bool {
        loop {
            match self.next() {
                None => return false,
                Some(Token::Comma) if self.depth == base => return true,
                Some(token) => each(token),
            }
        }
    }
}

/// What the tokens of a SET value amount to, read one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// Nothing yet.
    Empty,
    /// Signs so far.
    Sign,
    /// `_utf8mb4` so far.
    Introducer,
    /// A number, string, NULL, TRUE or FALSE.
    Literal,
    /// One word (`ON`, `DEFAULT`, `utf8mb4`).
    Word,
    /// Anything else.
    Complex,
}

impl Value {
    fn then(self, token: Token) -> Value {
        match (self, token) {
            (Value::Empty | Value::Sign, Token::Plus | Token::Minus) => Value::Sign,
            (Value::Empty | Value::Sign, Token::Number) => Value::Literal,
            (Value::Empty | Value::Introducer, Token::Text { .. }) => Value::Literal,
            (
                Value::Empty,
                Token::Word {
                    keyword: Keyword::Null | Keyword::True | Keyword::False,
                    after_dot: false,
                    ..
                },
            ) => Value::Literal,
            (
                Value::Empty,
                Token::Word {
                    text,
                    after_dot: false,
                    ..
                },
            ) => {
                if text.starts_with(b"_") {
                    Value::Introducer
                } else {
                    Value::Word
                }
            }
            _ => Value::Complex,
        }
    }
}
