package cachedsql

import (
	"context"
	"database/sql/driver"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"
)

// serveLookup answers a cacheable lookup through the filler. handled is
// false when the statement must pass through instead (a bypass). si is the
// prepared statement the query came through, nil for a direct query.
func (c *conn) serveLookup(ctx context.Context, lp *lookupPlan, query string, args []driver.NamedValue, si *stmt) (rows driver.Rows, handled bool, err error) {
	st := c.cn.driver.stats
	mode := cacheModeOf(ctx)
	switch {
	case mode == modeNoCache:
		st.bypass(BypassNoCache)
		return nil, false, nil
	case c.inTx():
		st.bypass(BypassTransaction)
		return nil, false, nil
	case c.sessionChanged:
		st.bypass(BypassSession)
		return nil, false, nil
	}
	if c.cn.flusher.bypassed(lp.table.qualified()) {
		st.bypass(BypassFailOpen)
		return nil, false, nil
	}
	l, ok := c.resolveLookupValue(lp, args) // a value: a hit does not allocate it
	if !ok {
		st.bypass(BypassArgs)
		return nil, false, nil
	}
	pc := c.pgxConn()
	if pc != nil && pc.PgConn().ParameterStatus("in_hot_standby") == "on" {
		st.bypass(BypassStandby)
		l.canFill = false
	}
	f := c.cn.filler
	var res *result
	if mode == modeFresh {
		lc := l
		res, err = f.readFresh(ctx, &lc, c.lookupQuery(pc, query, args, si, &lc))
	} else if st, rerr := f.readCache(ctx, &l); rerr == nil && st.hit != nil {
		// A hit, as f.read serves it, without building the query closure.
		f.countHit(st.hit)
		res = st.hit
	} else {
		lc := l
		res, err = f.readFrom(ctx, &lc, st, rerr, c.lookupQuery(pc, query, args, si, &lc))
	}
	if err != nil {
		return nil, true, err
	}
	var m *pgtype.Map
	if pc != nil {
		m = pc.TypeMap()
	}
	return res.replayReusing(m, &c.spareRows), true, nil
}

// lookupQuery is the query function of a lookup that reaches the
// database: materialize, then report a result that breaks its rule.
func (c *conn) lookupQuery(pc *pgx.Conn, query string, args []driver.NamedValue, si *stmt, l *lookup) queryFunc {
	f := c.cn.filler
	return func(ctx context.Context) (*result, error) {
		res, err := c.materialize(ctx, pc, query, args, si)
		if err == nil {
			f.checkRows(l, res)
		}
		return res, err
	}
}

// materialize runs a lookup on the database and reads its rows: through
// pgx directly when the connection is pgx's (so the raw values can be
// cached and replayed exactly), else through the wrapped driver.
func (c *conn) materialize(ctx context.Context, pc *pgx.Conn, query string, args []driver.NamedValue, si *stmt) (*result, error) {
	if pc != nil {
		return materializePgx(ctx, pc, query, args)
	}
	var inner driver.Rows
	var err error
	if si != nil {
		inner, err = si.innerQuery(ctx, args)
	} else {
		inner, err = c.passQuery(ctx, query, args)
	}
	if err != nil {
		return nil, err
	}
	return materializeRows(inner)
}

// resolveLookup turns a plan and its arguments into cache keys; false when
// an argument cannot be canonicalised (or names pgx options that rewrite
// the query), so the lookup must pass through.
func (c *conn) resolveLookup(lp *lookupPlan, args []driver.NamedValue) (*lookup, bool) {
	l, ok := c.resolveLookupValue(lp, args)
	if !ok {
		return nil, false
	}
	return &l, true
}

// resolveLookupValue is resolveLookup returning a value, which a hit keeps
// on the stack.
func (c *conn) resolveLookupValue(lp *lookupPlan, args []driver.NamedValue) (lookup, bool) {
	params, ok := stripPgxOptions(args)
	if !ok {
		return lookup{}, false
	}
	value := func(i int) (any, bool) {
		if i < 1 || i > len(params) {
			return nil, false
		}
		return params[i-1].Value, true
	}
	k := lp.table.keys[lp.key]
	var valBuf [4]any
	vals := valBuf[:0]
	if len(lp.args) > len(valBuf) {
		vals = make([]any, 0, len(lp.args))
	}
	vals = vals[:len(lp.args)]
	for i, a := range lp.args {
		if a.param == 0 {
			vals[i] = a.literal
			continue
		}
		v, ok := value(a.param)
		if !ok {
			return lookup{}, false
		}
		vals[i] = v
	}
	var canonBuf [4]string
	canon, ok := appendCanonicalKey(canonBuf[:0], k, vals)
	if !ok {
		return lookup{}, false
	}
	shape := lp.shape
	if len(lp.extra) > 0 || len(lp.rawParams) > 0 {
		var b strings.Builder
		b.WriteString(shape)
		for _, group := range [2][]int{lp.extra, lp.rawParams} {
			b.WriteByte('|')
			for _, i := range group {
				v, ok := value(i)
				if !ok {
					return lookup{}, false
				}
				s, ok := canonGeneric(v, false)
				if !ok && v != nil {
					return lookup{}, false
				}
				if v == nil {
					s = "null"
				}
				b.WriteString(strconv.Itoa(len(s)))
				b.WriteByte(':')
				b.WriteString(s)
			}
		}
		shape = b.String()
	}
	cat := c.pl.cat
	ek, gk := lookupKeys(cat.namespace, lp.table, lp.key, canon)
	rule := lp.table.rule
	rules := &c.cn.cfg.Rules
	missTTL, cacheMisses := rules.missTTL(rule, c.cn.cfg.MissTTL)
	return lookup{
		entryKey:    ek,
		genKey:      gk,
		shape:       shape,
		rule:        lp.rule,
		ttl:         rules.ttl(rule, c.cn.cfg.TTL),
		missTTL:     missTTL,
		cacheMisses: cacheMisses,
		canFill:     true,
	}, true
}

// stripPgxOptions drops pgx's leading option arguments (query exec mode,
// result formats), which pgx removes before binding placeholders. Named
// arguments and other query rewriters change the statement: ok is false.
func stripPgxOptions(args []driver.NamedValue) (params []driver.NamedValue, ok bool) {
	for i, a := range args {
		switch a.Value.(type) {
		case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID:
			continue
		case pgx.QueryRewriter:
			return nil, false
		}
		return args[i:], true
	}
	return nil, true
}

// pgxConn is the *pgx.Conn under a pgx stdlib connection, or nil.
func (c *conn) pgxConn() *pgx.Conn {
	if sc, ok := c.inner.(*stdlib.Conn); ok {
		return sc.Conn()
	}
	return nil
}
