package parser

import "strings"

// setStmt classifies SET: transaction characteristics are TxControl, the
// rest changes session variables.
func (p *parser) setStmt(st *Statement, lo, hi int) {
	i := lo + 1
	ss := &SessionInfo{Op: SessionSet}
	global := false
	switch t := p.tok(i, hi); {
	case t.is("local"):
		ss.Local = true
		i++
	case t.is("session") && !p.tok(i+1, hi).is("authorization") && !p.tok(i+1, hi).is("characteristics"):
		i++
	case t.is("global") || t.is("persist") || t.is("persist_only"):
		global = true
		i++
	}
	t := p.tok(i, hi)
	switch {
	case t.is("transaction"):
		p.txStmt(st, lo, lo) // sets Kind and Tx
		st.Tx.Op = TxSetTransaction
		if p.d == MySQL && (global || p.toks[lo+1].is("session")) {
			st.Tx.Op, st.Tx.Global = TxSetCharacteristics, global
		}
		p.txModes(st, st.Tx, i+1, hi)
		return
	case t.is("session") && p.tok(i+1, hi).is("characteristics"):
		p.txStmt(st, lo, lo)
		st.Tx.Op = TxSetCharacteristics
		p.txModes(st, st.Tx, p.skipWords(i+2, hi, "as", "transaction"), hi)
		return
	case t.is("session") && p.tok(i+1, hi).is("authorization"):
		ss.Variable, ss.Affects, i = "session authorization", AffectsSessionAuthorization, i+2
	case t.is("role"):
		ss.Variable, ss.Affects, i = "role", AffectsRole, i+1
	case t.is("time") && p.tok(i+1, hi).is("zone"):
		ss.Variable, i = "timezone", i+2
	case t.is("schema"):
		ss.Variable, ss.Affects, i = "search_path", AffectsSearchPath, i+1
	case t.is("names"):
		ss.Variable, i = "names", i+1
	default:
		// name [. name] {TO | = | :=} value, or MySQL's a = 1, @b := 2, ...
		var buf [8][2]int
		for k, r := range p.splitTop(i, hi, buf[:0]) {
			eq := r[0]
			for eq < r[1] && !(p.toks[eq].is("to") || p.toks[eq].isPunct("=") || p.toks[eq].isPunct(":=") || p.toks[eq].is("from")) {
				eq++
			}
			name := p.varName(r[0], eq)
			ss.Affects |= affects(name)
			if k == 0 {
				ss.Variable = name
				i = eq + 1
				if p.tok(eq, hi).is("from") { // SET x FROM CURRENT
					i = eq
				}
			}
			if p.d != MySQL {
				break
			}
		}
	}
	if global && ss.Affects != 0 {
		ss.Affects = 0 // SET GLOBAL changes new sessions, not this one
	}
	if i < hi {
		ss.Value = p.text(i, hi)
	}
	st.Kind, st.Session = Session, ss
}

// varName folds a variable name: "app.user_id", "@v", "@@session.x" -> "x".
func (p *parser) varName(lo, hi int) string {
	name := foldASCII(p.text(lo, hi))
	if strings.HasPrefix(name, "@@") {
		name = strings.TrimPrefix(name[2:], "session.")
		name = strings.TrimPrefix(name, "local.")
	}
	if hi-lo == 1 {
		return p.toks[lo].Name()
	}
	return name
}

func affects(name string) Affects {
	switch name {
	case "search_path":
		return AffectsSearchPath
	case "role":
		return AffectsRole
	case "session_authorization":
		return AffectsSessionAuthorization
	case "transaction_isolation", "tx_isolation":
		return AffectsTransactionIsolation
	case "default_transaction_isolation":
		return AffectsDefaultTransactionIsolation
	case "autocommit":
		return AffectsAutocommit
	}
	return 0
}

// sessionStmt classifies RESET, SHOW, DISCARD, LISTEN, UNLISTEN, NOTIFY,
// PREPARE, DEALLOCATE, USE, PRAGMA and utility commands.
func (p *parser) sessionStmt(st *Statement, lo, hi int) {
	ss := &SessionInfo{}
	st.Kind, st.Session = Session, ss
	kw := foldASCII(p.toks[lo].Text)
	rest := p.text(lo+1, hi)
	switch kw {
	case "reset":
		ss.Op = SessionReset
		ss.Variable = strings.Join(strings.Fields(foldASCII(rest)), " ")
		switch ss.Variable {
		case "all":
			ss.Affects = AffectsAll
		case "role":
			ss.Affects = AffectsRole
		case "session authorization":
			ss.Affects = AffectsSessionAuthorization
		default:
			ss.Affects = affects(ss.Variable)
		}
	case "show", "describe", "desc":
		ss.Op, ss.Variable = SessionShow, foldASCII(rest)
	case "discard":
		ss.Op, ss.Variable = SessionDiscard, foldASCII(rest)
		if ss.Variable == "all" {
			ss.Affects = AffectsAll
		}
	case "listen", "unlisten":
		ss.Op, ss.Variable = SessionListen, p.tok(lo+1, hi).Name()
	case "notify":
		ss.Op, ss.Variable = SessionNotify, p.tok(lo+1, hi).Name()
		if p.tok(lo+2, hi).isPunct(",") {
			ss.Value = p.text(lo+3, hi)
		}
	case "prepare", "deallocate":
		ss.Op, ss.Variable = SessionPrepare, p.tok(p.skipWords(lo+1, hi, "prepare"), hi).Name()
		if as := p.find(lo, hi, "as"); kw == "prepare" && as < hi {
			ss.Value = p.text(as+1, hi)
			var sub Statement
			p.dispatch(&sub, as+1, hi, 1)
			for _, f := range sub.Functions {
				p.addFunc(st, f)
			}
		}
	case "use":
		ss.Op, ss.Variable, ss.Value, ss.Affects = SessionSet, "database", rest, AffectsSearchPath
	case "pragma":
		ss.Op = SessionShow
		eq := p.find(lo+1, hi, "=")
		for j := lo + 1; j < hi; j++ {
			if p.toks[j].isPunct("=") || p.toks[j].isPunct("(") {
				eq = j
				break
			}
		}
		ss.Variable = foldASCII(p.text(lo+1, eq))
		if eq < hi {
			ss.Op, ss.Value = SessionSet, p.text(eq, hi)
			if p.toks[eq].isPunct("=") {
				ss.Value = p.text(eq+1, hi)
			}
		}
	case "attach", "detach":
		ss.Op, ss.Variable, ss.Value, ss.Affects = SessionUtility, kw, rest, AffectsSearchPath
	default:
		ss.Op, ss.Variable, ss.Value = SessionUtility, kw, rest
	}
}
