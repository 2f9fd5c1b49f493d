package parser

// The allowlist: what a Lookup may call. A cached row must depend on
// nothing but the row and the parameters, so only IMMUTABLE functions,
// operators and casts qualify (PostgreSQL's pg_proc.provolatile = 'i').
// Everything else is named in the reason a SELECT is an OtherRead.

// dialect bit sets, for entries that hold in some dialects only.
const (
	inPG  = 1 << Postgres
	inMy  = 1 << MySQL
	inLit = 1 << SQLite
	inAll = inPG | inMy | inLit
)

// immutableFuncs are IMMUTABLE in the dialects given. concat and
// concat_ws are STABLE in PostgreSQL (they format any type) but
// deterministic in MySQL and SQLite.
var immutableFuncs = map[string]uint8{
	"lower": inAll, "upper": inAll, "coalesce": inAll, "nullif": inAll,
	"greatest": inPG | inMy, "least": inPG | inMy, "abs": inAll,
	"ceil": inPG | inMy, "ceiling": inPG | inMy, "floor": inPG | inMy, "round": inAll,
	"trunc": inPG, "sign": inPG | inMy, "mod": inPG | inMy, "power": inPG | inMy,
	"sqrt": inPG | inMy, "length": inAll, "char_length": inPG | inMy,
	"character_length": inPG | inMy, "octet_length": inAll, "bit_length": inPG | inMy,
	"trim": inAll, "btrim": inPG, "ltrim": inAll, "rtrim": inAll, "substr": inAll,
	"substring": inPG | inMy, "replace": inAll, "left": inPG | inMy, "right": inPG | inMy,
	"lpad": inPG | inMy, "rpad": inPG | inMy, "split_part": inPG, "strpos": inPG,
	"position": inPG | inMy, "reverse": inPG | inMy, "repeat": inPG | inMy,
	"initcap": inPG, "ascii": inPG | inMy, "chr": inPG, "starts_with": inPG,
	"md5": inPG | inMy, "translate": inPG, "array_length": inPG, "cardinality": inPG,
	"jsonb_extract_path_text": inPG, "jsonb_extract_path": inPG, "jsonb_typeof": inPG,
	"ifnull": inMy | inLit, "concat": inMy | inLit, "concat_ws": inMy | inLit,
	"lcase": inMy, "ucase": inMy, "locate": inMy, "instr": inMy | inLit,
	"if": inMy, "iif": inLit, "hex": inMy | inLit, "typeof": inLit, "quote": inLit,
	"unicode": inLit,
}

// aggregates make a SELECT return a row computed from many rows.
var aggregates = map[string]bool{
	"count": true, "sum": true, "avg": true, "min": true, "max": true,
	"array_agg": true, "string_agg": true, "bool_and": true, "bool_or": true,
	"every": true, "json_agg": true, "jsonb_agg": true, "json_object_agg": true,
	"jsonb_object_agg": true, "group_concat": true, "stddev": true,
	"variance": true, "bit_and": true, "bit_or": true, "percentile_cont": true,
	"percentile_disc": true, "mode": true, "total": true, "xmlagg": true,
}

// stableFuncs depend on the session (time, settings, user, catalog).
var stableFuncs = map[string]bool{
	"now": true, "current_setting": true, "to_char": true, "to_date": true,
	"to_timestamp": true, "age": true, "date_trunc": true, "date_part": true,
	"extract": true, "format": true, "statement_timestamp": true,
	"transaction_timestamp": true, "current_timestamp": true, "localtimestamp": true,
	"localtime": true, "current_time": true, "current_schema": true,
	"current_schemas": true, "current_database": true, "pg_backend_pid": true,
	"version": true, "has_table_privilege": true, "has_column_privilege": true,
	"pg_has_role": true, "row_security_active": true, "inet_client_addr": true,
	"to_json": true, "to_jsonb": true, "json_build_object": true,
	"jsonb_build_object": true, "array_to_string": true, "concat": true,
	"concat_ws": true, "curdate": true, "curtime": true, "date_format": true,
	"unix_timestamp": true, "database": true, "user": true, "current_user": true,
	"session_user": true, "connection_id": true, "found_rows": true,
	"row_count": true, "date": true, "time": true, "datetime": true,
	"julianday": true, "strftime": true, "unixepoch": true, "changes": true,
	"total_changes": true, "last_insert_rowid": true, "schema": true,
	"to_tsvector": true, "to_tsquery": true, "plainto_tsquery": true,
}

// volatileFuncs may return a different value on every call.
var volatileFuncs = map[string]bool{
	"random": true, "nextval": true, "setval": true, "currval": true,
	"lastval": true, "gen_random_uuid": true, "uuid_generate_v1": true,
	"uuid_generate_v4": true, "clock_timestamp": true, "timeofday": true,
	"pg_sleep": true, "setseed": true, "txid_current": true,
	"pg_current_xact_id": true, "rand": true, "uuid": true, "uuid_short": true,
	"sleep": true, "randomblob": true, "sysdate": true, "get_lock": true,
	"release_lock": true, "last_insert_id": true, "pg_advisory_lock": true,
	"pg_try_advisory_lock": true, "dblink": true, "dblink_exec": true,
}

// sessionKeywords are SQL-standard functions written without parentheses;
// all of them depend on the session. In PostgreSQL "user" is one of them.
var sessionKeywords = map[string]uint8{
	"current_user": inPG | inMy, "session_user": inPG, "current_role": inPG,
	"system_user": inPG, "current_catalog": inPG, "current_schema": inPG,
	"current_date": inAll, "current_time": inAll, "current_timestamp": inAll,
	"localtime": inPG | inMy, "localtimestamp": inPG | inMy, "user": inPG,
	"utc_date": inMy, "utc_time": inMy, "utc_timestamp": inMy,
}

// castClass says whether a cast to a type is immutable.
type castClass uint8

const (
	castOK        castClass = iota + 1 // immutable from any operand
	castConstOnly                      // immutable from a parameter or literal; from a column it may format a timestamp, which is STABLE
	castSession                        // date/time input and output depend on TimeZone and DateStyle
	castCatalog                        // reg* types depend on the catalog and search_path
)

var castTypes = map[string]castClass{
	"smallint": castOK, "int2": castOK, "integer": castOK, "int": castOK,
	"int4": castOK, "bigint": castOK, "int8": castOK, "numeric": castOK,
	"decimal": castOK, "real": castOK, "float4": castOK, "float8": castOK,
	"double precision": castOK, "float": castOK, "boolean": castOK, "bool": castOK,
	"uuid": castOK, "signed": castOK, "unsigned": castOK, "signed integer": castOK,
	"unsigned integer": castOK,
	"text":             castConstOnly, "varchar": castConstOnly, "character varying": castConstOnly,
	"char": castConstOnly, "character": castConstOnly, "bpchar": castConstOnly,
	"name": castConstOnly, "citext": castConstOnly, "json": castConstOnly,
	"jsonb": castConstOnly, "bytea": castConstOnly, "binary": castConstOnly,
	"date": castSession, "time": castSession, "timetz": castSession,
	"timestamp": castSession, "timestamptz": castSession, "interval": castSession,
	"timestamp with time zone": castSession, "timestamp without time zone": castSession,
	"time with time zone": castSession, "time without time zone": castSession,
	"datetime": castSession, "abstime": castSession,
	"regclass": castCatalog, "regtype": castCatalog, "regproc": castCatalog,
	"regprocedure": castCatalog, "regoper": castCatalog, "regnamespace": castCatalog,
	"regrole": castCatalog, "regconfig": castCatalog,
}

// typeWords continue a multi-word type name.
var typeWords = map[string]bool{
	"precision": true, "varying": true, "with": true, "without": true,
	"time": true, "zone": true, "integer": true,
}

// allowedOps are operators with immutable implementations for the types
// they apply to. || is left out in PostgreSQL: anynonarray || text is
// STABLE (it formats timestamps); + and - are kept although timestamptz +
// interval is STABLE, because refusing arithmetic would refuse too much
// (see doc.go, "Limits").
var allowedOps = map[string]uint8{
	"=": inAll, "<>": inAll, "!=": inAll, "<": inAll, ">": inAll, "<=": inAll,
	">=": inAll, "+": inAll, "-": inAll, "*": inAll, "/": inAll, "%": inAll,
	"~~": inPG, "!~~": inPG, "~~*": inPG, "!~~*": inPG, "~": inPG, "~*": inPG,
	"!~": inPG, "!~*": inPG, "^": inPG | inMy, "->": inAll, "->>": inAll, "#>": inPG,
	"#>>": inPG, "@>": inPG, "<@": inPG, "?": inPG, "?|": inPG, "?&": inPG,
	"&": inAll, "|": inAll, "<<": inAll, ">>": inAll, "<=>": inMy, "==": inLit,
	"||": inMy | inLit, "&&": inMy, "=>": inPG, "::": inAll,
}

// notCalls are keywords that may precede "(" without being a function.
var notCalls = map[string]bool{
	"in": true, "any": true, "some": true, "all": true, "exists": true,
	"values": true, "and": true, "or": true, "not": true, "over": true,
	"filter": true, "within": true, "row": true, "array": true, "is": true,
	"like": true, "ilike": true, "similar": true, "between": true, "when": true,
	"then": true, "else": true, "case": true, "distinct": true, "on": true,
	"using": true, "as": true, "select": true, "from": true, "where": true,
	"by": true, "with": true, "to": true, "set": true, "returning": true,
	"into": true, "table": true, "join": true, "lateral": true, "only": true,
	"end": true, "escape": true, "of": true, "limit": true, "offset": true,
	"do": true, "update": true, "conflict": true, "key": true, "cube": true,
	"rollup": true, "sets": true, "interval": true, "symmetric": true, "returns": true,
	"insert": true, "matched": true, "zone": true,
}

// reserved are keywords that cannot be a bare alias or a table name, the
// ones that end a clause. Keywords missing here, such as "update" or
// "name", are taken as identifiers, as PostgreSQL does.
var reserved = map[string]bool{
	"all": true, "and": true, "any": true, "array": true, "as": true, "asc": true,
	"both": true, "case": true, "cast": true, "check": true, "collate": true,
	"column": true, "constraint": true, "create": true, "cross": true,
	"default": true, "desc": true, "distinct": true, "do": true, "else": true,
	"end": true, "except": true, "false": true, "fetch": true, "for": true,
	"foreign": true, "from": true, "full": true, "grant": true, "group": true,
	"having": true, "in": true, "inner": true, "intersect": true, "into": true,
	"is": true, "join": true, "lateral": true, "left": true, "limit": true,
	"natural": true, "not": true, "null": true, "offset": true, "on": true,
	"only": true, "or": true, "order": true, "outer": true, "primary": true,
	"references": true, "returning": true, "right": true, "select": true,
	"some": true, "table": true, "then": true, "to": true, "true": true,
	"union": true, "unique": true, "using": true, "when": true, "where": true,
	"window": true, "with": true, "tablesample": true, "lock": true, "straight_join": true,
	"ilike": true, "like": true, "between": true, "similar": true, "isnull": true,
	"notnull": true, "overlaps": true, "verbose": true, "analyze": true,
}

func funcAllowed(name string, d Dialect) bool { return immutableFuncs[name]&(1<<d) != 0 }
