// Package checker checks a history of reads and writes against a cache's
// consistency guarantee (design brief G4): once a write is acknowledged,
// every read that starts afterwards sees it or a later write.
//
// The unit is a key: a value that finds at most one row (a primary key, a
// natural key, a composite key). Its state is the version of the row that
// holds it, or absent (0). Writes are transactions; what each committed one
// did to each key comes from the database (a log the writes fill in their
// own transactions), so the checker never trusts a writer's belief about
// what it wrote. Writers tag their writes with the versions they produced
// (and deleted), which ties a client's acknowledgement to a commit.
//
// Three checks, from cheap and explicit to exhaustive:
//
//   - phantom: a read saw a version no committed write produced;
//   - stale: a read that started after write W was acknowledged saw a
//     value whose every possible writer the database's log places before
//     W (an older version, or absent although the row exists, or a row
//     although it was deleted or renamed away). The log, not the clients'
//     intervals, orders a key's writes: a write that started before W was
//     acknowledged may still have committed after W;
//   - linearizability: each key's sub-history against a register model
//     (porcupine), which finds what the pairwise check cannot.
//
// Lost and duplicated writes: an acknowledged write whose tags are not in
// the log, and a tag in the log twice.
package checker

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Never is the acknowledgement time of a write that was never acknowledged.
const Never = math.MaxInt64

// Write is one write as its client saw it: a transaction or an autocommit
// statement. Times are UnixNano on one machine's clock.
type Write struct {
	Proc  int
	Kind  string
	Start int64
	// End is when it was acknowledged (Commit, Exec or Rows.Close
	// returned nil); Never if it failed, its outcome is unknown, or its
	// process died.
	End  int64
	Tags []string // "v<version>" written, "d<version>" deleted
	Err  string   // why it was not acknowledged, for Explain (not checked)
}

// Read is one lookup by key as its client saw it.
type Read struct {
	Proc  int
	Key   string
	Start int64
	End   int64
	Value int64  // the version seen; 0: absent
	Err   string // non-empty: the read failed (it is not checked, but counted)
	Note  string // how the read was served, for Explain (free-form; not checked)
}

// Commit is one committed transaction, from the database's log.
type Commit struct {
	Tx   string
	Tags []string
	// Effects is what it left at each key it touched: the version of the
	// row now holding the key, or 0 when it left the key absent.
	Effects map[string]int64
	// Logged is when the database changed each key (UnixNano; absent:
	// unknown). It orders a key's commits (the row locks and unique
	// indexes serialize them) for the stale check and Explain, and shows
	// when a write whose client gave up really ran. A key one of whose
	// commits has no position is ordered by the clients' intervals.
	Logged map[string]int64
}

// History is everything a run produced.
type History struct {
	Writes  []Write
	Reads   []Read
	Commits []Commit
	// Initial holds each key's value before the run (absent keys: 0), as
	// if written by one write acknowledged before any operation started.
	Initial map[string]int64
}

// Violation is one broken guarantee.
type Violation struct {
	Kind   string // phantom, stale, lost, duplicated, linearizability
	Key    string
	Detail string
}

func (v Violation) String() string { return v.Kind + " " + v.Key + ": " + v.Detail }

// Result is what Check found.
type Result struct {
	Reads, FailedReads     int
	Writes, AckedWrites    int
	Commits, Unclaimed     int // commits, and those no client write claimed
	Keys                   int
	Violations             []Violation
	LinearizabilityUnknown int // keys porcupine gave up on (timeout)
	Elapsed                time.Duration
}

// Summary is a one-line account of r.
func (r *Result) Summary() string {
	kinds := map[string]int{}
	for _, v := range r.Violations {
		kinds[v.Kind]++
	}
	var ks []string
	for k, n := range kinds {
		ks = append(ks, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(ks)
	return fmt.Sprintf("reads %d (failed %d), writes %d (acknowledged %d), commits %d (unclaimed %d), keys %d, violations %d [%s], porcupine unknown %d, checked in %v",
		r.Reads, r.FailedReads, r.Writes, r.AckedWrites, r.Commits, r.Unclaimed, r.Keys, len(r.Violations), strings.Join(ks, " "), r.LinearizabilityUnknown, r.Elapsed.Round(time.Millisecond))
}

// keyWrite is a committed write's effect on one key.
type keyWrite struct {
	start, end int64
	value      int64
	tx         string
	who        string // the acknowledged writer: process and kind
	logged     int64  // when the database changed the key (0: unknown; the initial state: math.MinInt64)
}

func (w keyWrite) place() string {
	switch w.logged {
	case math.MinInt64:
		return "before the run"
	case 0:
		return "not logged"
	}
	return fmt.Sprintf("logged at %d", w.logged)
}

// staleIndex answers G4's question for one key: which writes a read that
// started at a given time must see (or see replaced).
//
// The key's writes are ordered as the database ran them: by Logged, which
// the row lock and the unique indexes make a total order of the commits
// that touched the key (the second of two waits until the first commits).
// A client's interval does not order them: a write may start before
// another is acknowledged and still commit after it. A read that starts
// after write W was acknowledged must return W's value or that of a commit
// the log places after W. Only if some commit of the key was not logged
// does the index fall back to the clients' intervals for that key: then a
// commit follows W if it started after W was acknowledged.
type staleIndex struct {
	ws     []keyWrite
	logged bool // every commit of the key has a log position
	// byEnd: the acknowledged writes by acknowledgement; latest[i] is the
	// write of byEnd[:i+1] the log places last (logged only).
	byEnd  []int
	latest []int
}

func newStaleIndex(ws []keyWrite) *staleIndex {
	st := &staleIndex{ws: ws, logged: true}
	for i, w := range ws {
		if w.logged == 0 {
			st.logged = false
		}
		if w.end != Never {
			st.byEnd = append(st.byEnd, i)
		}
	}
	sort.SliceStable(st.byEnd, func(a, b int) bool { return ws[st.byEnd[a]].end < ws[st.byEnd[b]].end })
	if st.logged {
		st.latest = make([]int, len(st.byEnd))
		for j, i := range st.byEnd {
			st.latest[j] = i
			if j > 0 && ws[st.latest[j-1]].logged > ws[i].logged {
				st.latest[j] = st.latest[j-1]
			}
		}
	}
	return st
}

// by names the order the index uses.
func (st *staleIndex) by() string {
	if st.logged {
		return "the database log"
	}
	return "the clients' intervals (some commit of the key is not logged)"
}

// stale reports whether a read that started at start and returned the
// value of the writes cands is stale: the read saw one of cands, and each
// of them comes before some write acknowledged before start. It names
// that write (for the candidate placed last) and that candidate.
func (st *staleIndex) stale(start int64, cands []int) (w, c int, stale bool) {
	n := sort.Search(len(st.byEnd), func(j int) bool { return st.ws[st.byEnd[j]].end >= start })
	if n == 0 {
		return 0, 0, false
	}
	if st.logged {
		// The log orders the key's writes: the one it places last among
		// those acknowledged binds, and a candidate at or after it (equal
		// positions: unordered, allowed) explains the read.
		w := st.latest[n-1]
		c := cands[0]
		for _, i := range cands {
			if st.ws[i].logged >= st.ws[w].logged {
				return 0, 0, false
			}
			if st.ws[i].logged > st.ws[c].logged {
				c = i
			}
		}
		return w, c, true
	}
	// The clients' intervals order two writes only if one was
	// acknowledged before the other started: each candidate must be
	// followed so by a write acknowledged before start.
	for _, i := range cands {
		by := -1 // the earliest acknowledged of the writes that follow i
		for _, j := range st.byEnd[:n] {
			if st.ws[j].start > st.ws[i].end {
				by = j
				break
			}
		}
		if by < 0 {
			return 0, 0, false
		}
		if !stale || st.ws[i].end >= st.ws[c].end {
			w, c, stale = by, i, true
		}
	}
	return w, c, stale
}

// regOp is a porcupine input: a write of value, or a read.
type regOp struct {
	key   string
	write bool
	value int64
}

// Check checks h. timeout bounds the linearizability search (all keys).
func Check(h *History, timeout time.Duration) *Result {
	began := time.Now()
	r := &Result{Reads: len(h.Reads), Writes: len(h.Writes), Commits: len(h.Commits)}
	for _, w := range h.Writes {
		if w.End != Never {
			r.AckedWrites++
		}
	}
	// Tie tags to commits.
	tagCommit := map[string]int{}
	for i, c := range h.Commits {
		for _, t := range c.Tags {
			if j, dup := tagCommit[t]; dup {
				r.Violations = append(r.Violations, Violation{"duplicated", t,
					fmt.Sprintf("in commits %s and %s", h.Commits[j].Tx, c.Tx)})
				continue
			}
			tagCommit[t] = i
		}
	}
	// Several writes may carry one tag: every attempt to delete a version
	// carries its "d" tag, and only one can have deleted it. The one
	// acknowledged claims the commit; if none was, the commit spans from
	// the first attempt's start to the end (its writer is unknown).
	claims := make([][]*Write, len(h.Commits))
	for i := range h.Writes {
		w := &h.Writes[i]
		seen := map[int]bool{}
		for _, t := range w.Tags {
			ci, ok := tagCommit[t]
			switch {
			case !ok && w.End != Never:
				r.Violations = append(r.Violations, Violation{"lost", t,
					fmt.Sprintf("%s by process %d acknowledged at %d, not in the database", w.Kind, w.Proc, w.End)})
			case ok && !seen[ci]:
				seen[ci] = true
				claims[ci] = append(claims[ci], w)
			}
		}
	}
	span := make([][2]int64, len(h.Commits))
	who := make([]string, len(h.Commits))
	for ci, ws := range claims {
		span[ci] = [2]int64{0, Never}
		var acked []*Write
		for j, w := range ws {
			if j == 0 || w.Start < span[ci][0] {
				span[ci][0] = w.Start
			}
			if w.End != Never {
				acked = append(acked, w)
			}
		}
		switch {
		case len(ws) == 0:
			r.Unclaimed++
		case len(acked) == 1:
			span[ci] = [2]int64{acked[0].Start, acked[0].End}
			who[ci] = fmt.Sprintf("process %d %s", acked[0].Proc, acked[0].Kind)
		case len(acked) > 1:
			r.Violations = append(r.Violations, Violation{"duplicated", h.Commits[ci].Tx,
				fmt.Sprintf("commit claimed by %d acknowledged writes", len(acked))})
		}
	}
	// Each key's writes: the initial state, then every commit.
	writes := map[string][]keyWrite{}
	for k, v := range h.Initial {
		writes[k] = append(writes[k], keyWrite{start: 0, end: 1, value: v, tx: "initial", logged: math.MinInt64})
	}
	for i, c := range h.Commits {
		start, end := span[i][0], span[i][1]
		for k, v := range c.Effects {
			if _, ok := writes[k]; !ok {
				writes[k] = append(writes[k], keyWrite{start: 0, end: 1, value: 0, tx: "initial", logged: math.MinInt64})
			}
			writes[k] = append(writes[k], keyWrite{start: start, end: end, value: v, tx: c.Tx, who: who[i], logged: c.Logged[k]})
		}
	}
	reads := map[string][]*Read{}
	for i := range h.Reads {
		rd := &h.Reads[i]
		if rd.Err != "" {
			r.FailedReads++
			continue
		}
		if _, ok := writes[rd.Key]; !ok {
			writes[rd.Key] = append(writes[rd.Key], keyWrite{start: 0, end: 1, value: 0, tx: "initial", logged: math.MinInt64})
		}
		reads[rd.Key] = append(reads[rd.Key], rd)
	}
	r.Keys = len(writes)

	var ops []porcupine.Operation
	for k, ws := range writes {
		byValue := map[int64][]int{}
		for i, w := range ws {
			byValue[w.value] = append(byValue[w.value], i)
			ops = append(ops, porcupine.Operation{Input: regOp{key: k, write: true, value: w.value}, Call: w.start, Return: w.end, Output: int64(0)})
		}
		st := newStaleIndex(ws)
		for _, rd := range reads[k] {
			ops = append(ops, porcupine.Operation{ClientId: rd.Proc, Input: regOp{key: k}, Call: rd.Start, Return: rd.End, Output: rd.Value})
			cands := byValue[rd.Value]
			if len(cands) == 0 {
				r.Violations = append(r.Violations, Violation{"phantom", k,
					fmt.Sprintf("process %d read version %d [%d, %d]: no committed write produced it here", rd.Proc, rd.Value, rd.Start, rd.End)})
				continue
			}
			if wi, ci, stale := st.stale(rd.Start, cands); stale {
				what := fmt.Sprintf("version %d", rd.Value)
				if rd.Value == 0 {
					what = "absent"
				}
				w, c := ws[wi], ws[ci]
				r.Violations = append(r.Violations, Violation{"stale", k,
					fmt.Sprintf("process %d read %s [%d, %d], %v after commit %s [%d, %d] (%s, value %d, %s) was acknowledged; %s places every commit of that value before it (the latest: %s [%d, %d] %s, %s)",
						rd.Proc, what, rd.Start, rd.End, time.Duration(rd.Start-w.end),
						w.tx, w.start, w.end, w.who, w.value, w.place(), st.by(),
						c.tx, c.start, c.end, c.who, c.place())})
			}
		}
	}
	model := porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			by := map[string][]porcupine.Operation{}
			for _, op := range history {
				k := op.Input.(regOp).key
				by[k] = append(by[k], op)
			}
			out := make([][]porcupine.Operation, 0, len(by))
			for _, p := range by {
				out = append(out, p)
			}
			return out
		},
		Init: func() any { return int64(-1) },
		Step: func(state, input, output any) (bool, any) {
			in := input.(regOp)
			if in.write {
				return true, in.value
			}
			return output.(int64) == state.(int64), state
		},
	}
	res, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	switch res {
	case porcupine.Illegal:
		// Name the keys whose partitions failed: re-check them one by one,
		// cheaply (the failing ones are usually few).
		bad := illegalKeys(model, ops, info)
		for _, k := range bad {
			r.Violations = append(r.Violations, Violation{"linearizability", k, "no order of this key's reads and writes agrees with their times"})
		}
		if len(bad) == 0 {
			r.Violations = append(r.Violations, Violation{"linearizability", "?", "the history is not linearizable"})
		}
	case porcupine.Unknown:
		r.LinearizabilityUnknown++
	}
	r.Elapsed = time.Since(began)
	return r
}

// illegalKeys re-checks each key alone and returns those that fail.
func illegalKeys(model porcupine.Model, ops []porcupine.Operation, _ porcupine.LinearizationInfo) []string {
	parts := model.Partition(ops)
	var bad []string
	single := model
	single.Partition = nil
	for _, p := range parts {
		if porcupine.CheckOperationsTimeout(single, p, 5*time.Second) == porcupine.Illegal {
			bad = append(bad, p[0].Input.(regOp).key)
		}
	}
	sort.Strings(bad)
	return bad
}

// Inversion is one place where a key's history is not linearizable.
type Inversion struct {
	From, To int64    // the window: its first write's start, the later read's end
	Lines    []string // the reads, and the writes and reads of the key in the window
}

// Explain locates where key's history stops being linearizable, for a
// human. The database's log orders key's commits; a read can only have
// seen a commit of its value that started before the read ended and that
// no commit acknowledged before the read started follows. An inversion is
// a read that started after another read ended, yet whose latest possible
// commit precedes the other's earliest. Explain lists each (at most limit)
// with the commits and reads of key that overlap it. Times are seconds
// since origin (UnixNano).
func Explain(h *History, key string, origin int64, limit int) []Inversion {
	type kw struct {
		pos                int
		value              int64
		start, end, logged int64
		who, tx            string
	}
	ws := []kw{{value: h.Initial[key], start: 0, end: 1, who: "initial"}}
	byTag := map[string][]*Write{}
	for i := range h.Writes {
		for _, t := range h.Writes[i].Tags {
			byTag[t] = append(byTag[t], &h.Writes[i])
		}
	}
	for _, c := range h.Commits {
		v, ok := c.Effects[key]
		if !ok {
			continue
		}
		w := kw{pos: len(ws), value: v, start: 0, end: Never, logged: c.Logged[key], tx: c.Tx, who: "unclaimed"}
		for _, t := range c.Tags {
			for _, cw := range byTag[t] {
				if w.who == "unclaimed" || cw.End != Never {
					w.start, w.end, w.who = cw.Start, cw.End, fmt.Sprintf("p%d %s", cw.Proc, cw.Kind)
					if cw.End == Never && cw.Err != "" {
						w.who += fmt.Sprintf(" (failed: %.60s)", cw.Err)
					}
				}
			}
		}
		ws = append(ws, w)
	}
	// A transaction's place in the log is its first change; its change to
	// key may come after other transactions' (it held no lock on key yet).
	sort.SliceStable(ws[1:], func(i, j int) bool {
		a, b := ws[1+i].logged, ws[1+j].logged
		return a != 0 && b != 0 && a < b
	})
	for i := range ws {
		ws[i].pos = i
	}
	// bounds: the commits r may have seen, lo..hi (lo > hi: none).
	bounds := func(r *Read) (lo, hi int) {
		acked := 0 // the latest commit acknowledged before r started
		for _, w := range ws {
			if w.end < r.Start {
				acked = max(acked, w.pos)
			}
		}
		lo, hi = len(ws), -1
		for _, w := range ws {
			if w.value == r.Value && w.start < r.End {
				hi = w.pos
				if w.pos >= acked {
					lo = min(lo, w.pos)
				}
			}
		}
		return lo, hi
	}
	type rb struct {
		r      *Read
		lo, hi int
	}
	var rs []rb
	for i := range h.Reads {
		if r := &h.Reads[i]; r.Key == key && r.Err == "" {
			lo, hi := bounds(r)
			rs = append(rs, rb{r, lo, hi})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].r.Start < rs[j].r.Start })
	byEnd := slices.Clone(rs)
	sort.Slice(byEnd, func(i, j int) bool { return byEnd[i].r.End < byEnd[j].r.End })
	ts := func(t int64) string {
		switch t {
		case Never:
			return "never"
		case 0:
			return "?"
		}
		return fmt.Sprintf("%.4f", float64(t-origin)/1e9)
	}
	val := func(v int64) string {
		if v == 0 {
			return "absent"
		}
		return fmt.Sprintf("v%d", v)
	}
	rd := func(r *Read) string {
		s := fmt.Sprintf("p%d read %s [%s, %s]", r.Proc, val(r.Value), ts(r.Start), ts(r.End))
		if r.Note != "" {
			s += " " + r.Note
		}
		return s
	}
	window := func(from, to int64, first string, marks ...int) Inversion {
		inv := Inversion{From: from, To: to, Lines: []string{first}}
		for _, w := range ws[1:] {
			if slices.Contains(marks, w.pos) || (w.start <= to && w.end >= from) {
				inv.Lines = append(inv.Lines, fmt.Sprintf("  commit #%d %s -> %s by %s [%s, %s] (tx %s, run at %s)", w.pos, key, val(w.value), w.who, ts(w.start), ts(w.end), w.tx, ts(w.logged)))
				inv.From = min(inv.From, w.start)
			}
		}
		shown := 0
		for _, r := range rs {
			if r.r.End >= from && r.r.Start <= to {
				if shown++; shown > 24 {
					inv.Lines = append(inv.Lines, "  ... more reads")
					break
				}
				inv.Lines = append(inv.Lines, "  "+rd(r.r))
			}
		}
		return inv
	}
	var out []Inversion
	best := -1 // in byEnd: the read ended so far whose earliest commit is latest
	next := 0
	lastEnd := int64(0)
	for _, r2 := range rs {
		for ; next < len(byEnd) && byEnd[next].r.End < r2.r.Start; next++ {
			if b := byEnd[next]; b.lo <= b.hi && (best < 0 || b.lo > byEnd[best].lo) {
				best = next
			}
		}
		if best < 0 || r2.hi >= byEnd[best].lo || r2.r.Start < lastEnd {
			continue
		}
		r1 := byEnd[best]
		lastEnd = r2.r.End
		inv := window(r1.r.Start, r2.r.End, fmt.Sprintf("inversion on %s: %s (commit #%d at the earliest), then %s (#%d at the latest)",
			key, rd(r1.r), r1.lo, rd(r2.r), r2.hi), r1.lo, r2.hi)
		if out = append(out, inv); len(out) == limit {
			break
		}
	}
	if len(out) == 0 {
		// No two reads out of order: name the first read no commit fits.
		for _, r := range rs {
			if r.lo > r.hi {
				out = append(out, window(r.r.Start-int64(100*time.Millisecond), r.r.End,
					fmt.Sprintf("no commit fits %s (stale or phantom)", rd(r.r)), r.hi))
				break
			}
		}
	}
	return out
}
