package parser

// Kind is the classification of a statement.
type Kind uint8

// Statement kinds.
const (
	// Unknown: the parser does not understand the statement (malformed
	// SQL, EXECUTE, named parameters, MySQL executable comments, ...). The
	// driver must treat it as a write of unknown tables.
	Unknown Kind = iota
	// Lookup: a single-row key lookup that may be served from the cache;
	// Statement.Lookup describes it.
	Lookup
	// Write: the statement may change rows; Statement.Targets lists every
	// table it may write.
	Write
	// TxControl: a transaction control statement; Statement.Tx describes it.
	TxControl
	// Session: a statement that changes or shows session state, or writes
	// no table (SET, SHOW, LISTEN, NOTIFY, plain EXPLAIN, VACUUM, ...);
	// Statement.Session describes it.
	Session
	// OtherRead: a read that must not be cached; Statement.Reason says why.
	OtherRead
	// Multi: several statements in one string; Statement.Parts holds them.
	Multi
)

var stmtKindNames = [...]string{"Unknown", "Lookup", "Write", "TxControl", "Session", "OtherRead", "Multi"}

// String returns the kind name, "Lookup" for Lookup.
func (k Kind) String() string {
	if int(k) < len(stmtKindNames) {
		return stmtKindNames[k]
	}
	return "Kind(?)"
}

// Statement is the parser's answer for one SQL string. It is plain data:
// it holds substrings of the input but no reference to parser state.
type Statement struct {
	Kind Kind
	// Start and End delimit the statement in the input, [Start, End),
	// leading trivia and a trailing ';' excluded. All other offsets in the
	// result are also offsets into the input given to Parse.
	Start, End int
	// Reason says in plain words why the statement is not a Lookup (for
	// OtherRead and Unknown, and for Write/Session/TxControl statements
	// whose classification needs a note). ReasonPos is the byte offset it
	// refers to, or -1.
	Reason    string
	ReasonPos int
	// Name and Cmd come from a leading sqlc comment "-- name: Name :cmd".
	Name, Cmd string
	// MaxParam is the highest parameter index the statement uses (0: none).
	// It is MaxParam+1 (the package constant) when an index overflows; the
	// statement is then Unknown.
	MaxParam int
	// Functions lists every function the statement calls, folded, in order
	// of first appearance, schema-qualified as written ("app.create_user").
	// The driver flushes tables for functions its rules declare as writing.
	Functions []string

	Lookup    *LookupInfo  // Kind == Lookup
	Targets   []Target     // Kind == Write: every table the statement may write
	Tx        *TxInfo      // Kind == TxControl
	Session   *SessionInfo // Kind == Session
	Parts     []Statement  // Kind == Multi: the statements, in order
	CTEReads  bool         // Kind == Write: a WITH query also reads tables
	Explained bool         // the statement was wrapped in EXPLAIN ANALYZE
}

// LookupInfo describes a single-row key lookup: one table, an AND of
// equalities pinning columns to parameters or literals, and nothing that
// can return more than one row or depend on anything but that row.
type LookupInfo struct {
	Schema, Table, Alias string
	// Pinned lists the equality conjuncts of WHERE. No column appears twice.
	Pinned []Equality
	// Columns is the projection, in order.
	Columns []Column
	// Extra lists the other row-local conjuncts of WHERE, as written.
	Extra []Span
	// ExtraParams lists, ascending and without duplicates, the parameters
	// used anywhere outside Pinned (projection, Extra, ORDER BY). A cached
	// result must be keyed by their values too.
	ExtraParams []int
	// Limit1 is set for LIMIT 1 or FETCH FIRST 1 ROW ONLY.
	Limit1 bool
	// OrderBy is set when an ORDER BY is present (only allowed with Limit1).
	OrderBy bool
}

// Span is a byte range [Start, End) of the input, with its text.
type Span struct {
	Start, End int
	Text       string
	Params     []int // parameters used inside, in order of appearance
}

// Equality is a conjunct "column = value" where value is a parameter or a
// literal, either side possibly wrapped in immutable functions or casts.
type Equality struct {
	Column string // folded column name
	Table  string // qualifier as written (folded), "" if none
	// ColumnWrap lists the functions and casts applied to the column,
	// innermost first: "lower", "::text". Empty for a bare column.
	ColumnWrap []string
	Value      Value
	Pos        int // byte offset of the conjunct
}

// Source says where a value comes from.
type Source uint8

// Value sources.
const (
	SourceParam   Source = iota + 1 // a placeholder, Value.Param
	SourceLiteral                   // a constant, Value.Literal and Value.Text
	SourceExpr                      // any other expression, Value.Text as written
	SourceDefault                   // the DEFAULT keyword in INSERT or UPDATE
)

var sourceNames = [...]string{"?", "Param", "Literal", "Expr", "Default"}

// String returns the source name, "Param" for SourceParam.
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "Source(?)"
}

// LiteralKind is the type of a literal value.
type LiteralKind uint8

// Literal kinds.
const (
	LitString LiteralKind = iota + 1
	LitNumber
	LitBool
	LitNull
)

var litNames = [...]string{"?", "String", "Number", "Bool", "Null"}

// String returns the literal kind name, "String" for LitString.
func (k LiteralKind) String() string {
	if int(k) < len(litNames) {
		return litNames[k]
	}
	return "LiteralKind(?)"
}

// Value is the source of a value: a parameter, a literal or an expression.
type Value struct {
	Source  Source
	Param   int         // SourceParam: 1-based index
	Literal LiteralKind // SourceLiteral
	// Text is the decoded literal ("O'Brien", "42", "true", "") for
	// SourceLiteral, and the expression as written for SourceExpr.
	Text string
	// Wrap lists immutable functions and casts applied to a parameter or
	// literal, innermost first: "::bigint", "lower".
	Wrap []string
	// Params lists the parameters a SourceExpr uses, in order of appearance.
	Params []int
	Pos    int // byte offset of the value
}

// Column is one item of a projection or RETURNING list.
type Column struct {
	Expr  string // the expression as written, "*" or "t.*" included
	Name  string // folded column name when Expr is a plain column, else ""
	Table string // folded qualifier of a qualified column or t.*
	Alias string // the alias, folded (quoted aliases keep case)
	Star  bool   // * or t.*
	Pos   int
}

// WriteOp is what a statement does to one target table.
type WriteOp uint8

// Write operations.
const (
	OpUnknown      WriteOp = iota // a write the parser cannot describe
	OpInsert                      // INSERT ... VALUES with one row
	OpInsertMulti                 // INSERT ... VALUES with several rows
	OpInsertSelect                // INSERT ... SELECT (or TABLE, or WITH)
	OpUpsert                      // INSERT with ON CONFLICT, ON DUPLICATE KEY, REPLACE, INSERT OR IGNORE, ...
	OpUpdate
	OpDelete
	OpMerge
	OpTruncate
	OpDDL  // CREATE, ALTER, DROP, SELECT INTO, GRANT, ...
	OpCopy // COPY ... FROM, writes the table
	OpCall // CALL and DO: a procedure that may write anything
)

var opNames = [...]string{"Unknown", "Insert", "InsertMulti", "InsertSelect", "Upsert", "Update", "Delete", "Merge", "Truncate", "DDL", "Copy", "Call"}

// String returns the operation name, "Update" for OpUpdate.
func (o WriteOp) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return "WriteOp(?)"
}

// Target is one table a Write may change. An empty Table means the parser
// cannot name the tables (CALL, DO, CREATE FUNCTION, DROP ... CASCADE,
// TRUNCATE ... CASCADE): the driver must assume any table.
type Target struct {
	Op                   WriteOp
	Schema, Table, Alias string
	InCTE                bool // the write is a data-modifying WITH query

	// Where is the WHERE condition of UPDATE and DELETE (HasWhere set),
	// without the WHERE keyword, with the parameters it uses; the driver
	// can run "SELECT keys FROM t WHERE <Where.Text> FOR NO KEY UPDATE"
	// with the same arguments.
	HasWhere bool
	Where    Span
	// Pinned lists the equality conjuncts of WHERE (same shape as a
	// Lookup's). PureKeyWhere is set when WHERE is nothing but them.
	Pinned       []Equality
	PureKeyWhere bool

	// Set lists UPDATE's assignments, or an upsert's DO UPDATE SET / ON
	// DUPLICATE KEY UPDATE assignments.
	Set []Assignment
	// Columns is INSERT's column list (nil when omitted: all columns in
	// table order); Rows holds each VALUES row's value sources.
	Columns []string
	Rows    [][]Value
	// Conflict is an upsert's conflict target columns (ON CONFLICT (a, b));
	// ConflictConstraint names ON CONFLICT ON CONSTRAINT c; DoNothing is
	// set for DO NOTHING, INSERT IGNORE and INSERT OR IGNORE; Replace for
	// MySQL/SQLite REPLACE, which deletes the conflicting rows.
	Conflict           []string
	ConflictConstraint string
	DoNothing, Replace bool

	// From lists the other tables named by USING (DELETE, MERGE) or FROM
	// (UPDATE); they are read, not written.
	From []TableRef

	// Returning is the RETURNING list (nil if absent), ReturningText the
	// list as written.
	// ReturningAt is where to add key columns: just after the RETURNING
	// list if there is one (append ", pk"), otherwise at the end of the
	// statement before any trailing ';', space or comment (append
	// " RETURNING pk"). It is -1 when the statement cannot take RETURNING
	// (a WITH query, MySQL, TRUNCATE, DDL, ...).
	Returning     []Column
	ReturningText string
	ReturningAt   int
}

// TableRef names a table.
type TableRef struct {
	Schema, Table, Alias string
}

// Assignment is one SET item: column = value.
type Assignment struct {
	Column string // folded; "a.b" for a composite field, "a[]" for an array element
	Value  Value
}

// TxOp is a transaction control operation.
type TxOp uint8

// Transaction control operations.
const (
	TxBegin              TxOp = iota + 1 // BEGIN, START TRANSACTION
	TxCommit                             // COMMIT, END
	TxRollback                           // ROLLBACK, ABORT
	TxSavepoint                          // SAVEPOINT name
	TxRelease                            // RELEASE [SAVEPOINT] name
	TxRollbackTo                         // ROLLBACK TO [SAVEPOINT] name
	TxSetTransaction                     // SET TRANSACTION ...
	TxSetCharacteristics                 // SET SESSION CHARACTERISTICS AS TRANSACTION ..., MySQL SET [SESSION|GLOBAL] TRANSACTION
	TxPrepare                            // PREPARE TRANSACTION 'id'
	TxCommitPrepared                     // COMMIT PREPARED 'id'
	TxRollbackPrepared                   // ROLLBACK PREPARED 'id'
)

var txNames = [...]string{"?", "Begin", "Commit", "Rollback", "Savepoint", "Release", "RollbackTo", "SetTransaction", "SetCharacteristics", "Prepare", "CommitPrepared", "RollbackPrepared"}

// String returns the operation name, "Begin" for TxBegin.
func (o TxOp) String() string {
	if int(o) < len(txNames) {
		return txNames[o]
	}
	return "TxOp(?)"
}

// TxInfo describes a transaction control statement.
type TxInfo struct {
	Op TxOp
	// Isolation is "serializable", "repeatable read", "read committed" or
	// "read uncommitted", or "" if not given.
	Isolation string
	// ReadOnly and ReadWrite are set for READ ONLY and READ WRITE.
	ReadOnly, ReadWrite bool
	// Deferrable and NotDeferrable are set for [NOT] DEFERRABLE.
	Deferrable, NotDeferrable bool
	// Chain is set for COMMIT/ROLLBACK AND CHAIN.
	Chain bool
	// Name is the savepoint name (folded) or the prepared transaction id
	// (decoded string).
	Name string
	// Mode is SQLite's DEFERRED, IMMEDIATE or EXCLUSIVE, or MySQL's
	// "with consistent snapshot", folded; GLOBAL is set for MySQL's
	// SET GLOBAL TRANSACTION, which does not affect this session.
	Mode   string
	Global bool
}

// SessionOp is a session statement.
type SessionOp uint8

// Session operations.
const (
	SessionSet     SessionOp = iota + 1 // SET, SET LOCAL, MySQL SET @v, USE, SQLite PRAGMA x = v
	SessionReset                        // RESET
	SessionShow                         // SHOW, MySQL DESCRIBE, SQLite PRAGMA x
	SessionDiscard                      // DISCARD
	SessionListen                       // LISTEN, UNLISTEN
	SessionNotify                       // NOTIFY
	SessionExplain                      // EXPLAIN without ANALYZE: plans, runs nothing
	SessionPrepare                      // PREPARE name AS ..., DEALLOCATE
	SessionUtility                      // VACUUM, ANALYZE, CHECKPOINT, LOCK, LOAD, ATTACH, ...
)

var sessionNames = [...]string{"?", "Set", "Reset", "Show", "Discard", "Listen", "Notify", "Explain", "Prepare", "Utility"}

// String returns the operation name, "Set" for SessionSet.
func (o SessionOp) String() string {
	if int(o) < len(sessionNames) {
		return sessionNames[o]
	}
	return "SessionOp(?)"
}

// Affects is a set of session properties a statement changes, the ones
// that decide whether the cache may be used.
type Affects uint8

// Session properties.
const (
	AffectsSearchPath                  Affects = 1 << iota // search_path, SET SCHEMA, USE, ATTACH
	AffectsRole                                            // SET ROLE, RESET ROLE
	AffectsSessionAuthorization                            // SET SESSION AUTHORIZATION
	AffectsTransactionIsolation                            // transaction_isolation, tx_isolation
	AffectsDefaultTransactionIsolation                     // default_transaction_isolation
	AffectsAutocommit                                      // MySQL autocommit

	// AffectsAll is what RESET ALL and DISCARD ALL change.
	AffectsAll = AffectsSearchPath | AffectsRole | AffectsSessionAuthorization |
		AffectsTransactionIsolation | AffectsDefaultTransactionIsolation
)

// SessionInfo describes a session statement.
type SessionInfo struct {
	Op SessionOp
	// Local is set for SET LOCAL (until the end of the transaction).
	Local bool
	// Variable is the folded variable name ("search_path", "app.user_id",
	// "role", "time zone", "all"), or the channel for LISTEN and NOTIFY.
	Variable string
	// Value is the value text as written ("public, app", "'UTC'"), or "".
	Value   string
	Affects Affects
}
