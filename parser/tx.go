package parser

// txStmt classifies transaction control statements.
func (p *parser) txStmt(st *Statement, lo, hi int) {
	st.Kind = TxControl
	tx := &TxInfo{}
	st.Tx = tx
	kw := foldASCII(p.toks[lo].Text)
	i := lo + 1
	switch kw {
	case "begin", "start":
		tx.Op = TxBegin
		if kw == "start" && !p.tok(i, hi).is("transaction") {
			p.unknown(st, "START without TRANSACTION", p.tok(i, hi).Pos)
			return
		}
		for p.tok(i, hi).is("deferred") || p.tok(i, hi).is("immediate") || p.tok(i, hi).is("exclusive") {
			tx.Mode = foldASCII(p.toks[i].Text)
			i++
		}
		i = p.skipWords(i, hi, "work", "transaction")
		p.txModes(st, tx, i, hi)
	case "commit", "end", "rollback", "abort":
		tx.Op = TxCommit
		if kw == "rollback" || kw == "abort" {
			tx.Op = TxRollback
		}
		if p.tok(i, hi).is("prepared") {
			tx.Op = TxCommitPrepared
			if kw == "rollback" {
				tx.Op = TxRollbackPrepared
			}
			p.txName(tx, i+1, hi)
			return
		}
		i = p.skipWords(i, hi, "work", "transaction", "tran")
		switch t := p.tok(i, hi); {
		case t.is("to") && kw == "rollback":
			tx.Op = TxRollbackTo
			p.txName(tx, p.skipWords(i+1, hi, "savepoint"), hi)
		case t.is("and"):
			tx.Chain = !p.tok(i+1, hi).is("no")
		case i < hi && !t.is("release"):
			p.unknown(st, "unexpected "+clip(t.Text)+" after "+kw, t.Pos)
		}
	case "savepoint":
		tx.Op = TxSavepoint
		p.txName(tx, i, hi)
	case "release":
		tx.Op = TxRelease
		p.txName(tx, p.skipWords(i, hi, "savepoint"), hi)
	case "prepare":
		tx.Op = TxPrepare
		p.txName(tx, i+1, hi)
	}
}

// txName reads a savepoint name or a prepared transaction id.
func (p *parser) txName(tx *TxInfo, i, hi int) {
	t := p.tok(i, hi)
	if t.Kind == String {
		tx.Name, _ = stringValue(t.Text, p.d)
		return
	}
	tx.Name = t.Name()
}

// txModes reads ISOLATION LEVEL ..., READ ONLY/WRITE, [NOT] DEFERRABLE and
// MySQL's WITH CONSISTENT SNAPSHOT, separated by spaces or commas.
func (p *parser) txModes(st *Statement, tx *TxInfo, i, hi int) {
	for i < hi {
		t := p.toks[i]
		switch {
		case t.isPunct(","):
			i++
		case t.is("isolation") && p.tok(i+1, hi).is("level"):
			i += 2
			switch a, b := p.tok(i, hi), p.tok(i+1, hi); {
			case a.is("serializable"):
				tx.Isolation, i = "serializable", i+1
			case a.is("repeatable") && b.is("read"):
				tx.Isolation, i = "repeatable read", i+2
			case a.is("read") && b.is("committed"):
				tx.Isolation, i = "read committed", i+2
			case a.is("read") && b.is("uncommitted"):
				tx.Isolation, i = "read uncommitted", i+2
			default:
				p.unknown(st, "unknown isolation level", a.Pos)
				return
			}
		case t.is("read") && p.tok(i+1, hi).is("only"):
			tx.ReadOnly, i = true, i+2
		case t.is("read") && p.tok(i+1, hi).is("write"):
			tx.ReadWrite, i = true, i+2
		case t.is("deferrable"):
			tx.Deferrable, i = true, i+1
		case t.is("not") && p.tok(i+1, hi).is("deferrable"):
			tx.NotDeferrable, i = true, i+2
		case t.is("with") && p.tok(i+1, hi).is("consistent") && p.tok(i+2, hi).is("snapshot"):
			tx.Mode, i = "with consistent snapshot", i+3
		case t.is("snapshot") && p.tok(i+1, hi).Kind == String: // SET TRANSACTION SNAPSHOT 'id'
			tx.Name, _ = stringValue(p.toks[i+1].Text, p.d)
			i += 2
		default:
			p.unknown(st, "unexpected "+clip(t.Text)+" in transaction modes", t.Pos)
			return
		}
	}
}
