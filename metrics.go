package cachedsql

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// OpenTelemetry metrics (Config.MeterProvider). The counts are the Stats
// counters, published by observable instruments whose callback reads the
// atomics at collection time: the hot path pays nothing for metrics. Only
// flush latency is recorded as it happens, once per write's protect and
// release (which already cost cache round trips).
//
// Instruments, all prefixed "cachedsql.":
//
//	statements           counter   op=query|exec: statements run
//	pass_throughs        counter   statements that are not cacheable lookups
//	lookup.hits          counter   lookups served a row from the cache
//	lookup.negative_hits counter   lookups served a cached "no such row"
//	lookup.misses        counter   cacheable lookups that went to the database
//	fills                counter   results stored in the cache
//	fill.races_lost      counter   fills abandoned because the entry changed
//	lease.waits          counter   lookups that waited on a filler or writer
//	rule_violations      counter   cacheable lookups that returned several rows
//	bypasses             counter   reason=nocache|transaction|session|args|standby|failopen
//	flush.keys           counter   entry keys flushed
//	flush.table_bumps    counter   table generations changed (table-wide flushes)
//	flush.failures       counter   flushes that could not be recorded or cleared
//	flush.release_retries counter  background retries of clears after COMMIT
//	cache.errors         counter   cache operations that failed or timed out
//	cache.breaker_trips  counter   times the circuit breaker opened
//	cache.breaker.state  gauge     0 closed, 1 open, 2 half-open (worst of the pool's)
//	flush.duration       histogram seconds, op=protect|release, outcome=ok|error
//
// A Driver's pools share counters, so they share one set of instruments.

const meterName = "github.com/cachedsql/cachedsql"

// meters is the OpenTelemetry side of one counters value: registered once,
// by the first flusher whose Config has a MeterProvider, unregistered when
// the last one closes.
type meters struct {
	mu   sync.Mutex
	refs int
	reg  metric.Registration
	// guards are the pools' breakers, for the state gauge: copied on
	// write, so the callback reads them without m.mu (a collection may run
	// while detach holds it).
	guards        atomic.Pointer[[]*guard]
	flushDuration metric.Float64Histogram
}

// flushMetrics is what a flusher records into; nil records nothing.
type flushMetrics struct {
	duration metric.Float64Histogram
}

var (
	attrProtect = metric.WithAttributeSet(attribute.NewSet(attribute.String("op", "protect"), attribute.String("outcome", "ok")))
	attrProtErr = metric.WithAttributeSet(attribute.NewSet(attribute.String("op", "protect"), attribute.String("outcome", "error")))
	attrRelease = metric.WithAttributeSet(attribute.NewSet(attribute.String("op", "release"), attribute.String("outcome", "ok")))
	attrRelErr  = metric.WithAttributeSet(attribute.NewSet(attribute.String("op", "release"), attribute.String("outcome", "error")))
)

// start returns the time a flush step starts, or the zero time when no
// metrics are recorded (m nil).
func (m *flushMetrics) start() time.Time {
	if m == nil {
		return time.Time{}
	}
	return time.Now()
}

// record records a flush step's latency; op is "protect" or "release".
func (m *flushMetrics) record(ctx context.Context, op string, start time.Time, err error) {
	if m == nil {
		return
	}
	opt := attrProtect
	switch {
	case op == "protect" && err != nil:
		opt = attrProtErr
	case op == "release" && err == nil:
		opt = attrRelease
	case op == "release":
		opt = attrRelErr
	}
	m.duration.Record(context.WithoutCancel(ctx), time.Since(start).Seconds(), opt)
}

// instrument publishes c through mp (nil: nothing, and a nil
// *flushMetrics) and adds g's breaker to the state gauge. detach undoes it
// (flusher.close); the instruments go when the last pool detaches.
func (c *counters) instrument(mp metric.MeterProvider, g *guard, logErr func(error)) (fm *flushMetrics, detach func()) {
	if mp == nil {
		return nil, func() {}
	}
	m := &c.meters
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.refs == 0 {
		if err := m.register(mp, c); err != nil {
			logErr(err)
			return nil, func() {}
		}
	}
	m.refs++
	m.setGuards(append(m.loadGuards(), g))
	var once sync.Once
	return &flushMetrics{duration: m.flushDuration}, func() {
		once.Do(func() {
			m.mu.Lock()
			guards := m.loadGuards()
			for i, x := range guards {
				if x == g {
					guards = append(guards[:i], guards[i+1:]...)
					break
				}
			}
			m.setGuards(guards)
			m.refs--
			var reg metric.Registration
			if m.refs == 0 {
				reg, m.reg = m.reg, nil
			}
			m.mu.Unlock()
			if reg != nil {
				// Outside m.mu: the SDK may be collecting, and waits for it.
				reg.Unregister()
			}
		})
	}
}

// loadGuards returns a copy of the breakers' list.
func (m *meters) loadGuards() []*guard {
	if p := m.guards.Load(); p != nil {
		return append([]*guard(nil), (*p)...)
	}
	return nil
}

func (m *meters) setGuards(gs []*guard) { m.guards.Store(&gs) }

// register creates the instruments and the callback that feeds them from
// c's atomics. Called with m.mu held.
func (m *meters) register(mp metric.MeterProvider, c *counters) error {
	meter := mp.Meter(meterName)
	type plain struct {
		name, desc string
		v          func() uint64
	}
	plains := []plain{
		{"cachedsql.pass_throughs", "Statements sent to the database untouched: not cacheable lookups.", c.passThroughs.Load},
		{"cachedsql.lookup.hits", "Lookups served a row from the cache.", c.hits.Load},
		{"cachedsql.lookup.negative_hits", `Lookups served a cached "no such row".`, c.negativeHits.Load},
		{"cachedsql.lookup.misses", "Cacheable lookups that went to the database.", c.misses.Load},
		{"cachedsql.fills", "Results stored in the cache.", c.fills.Load},
		{"cachedsql.fill.races_lost", "Fills abandoned because the entry changed between the read and the store.", c.fillRacesLost.Load},
		{"cachedsql.lease.waits", "Lookups that waited on another filler or writer.", c.leaseWaits.Load},
		{"cachedsql.rule_violations", "Cacheable lookups that returned several rows.", c.ruleViolations.Load},
		{"cachedsql.flush.keys", "Entry keys flushed by committed writes and Flush calls.", c.flushes.Load},
		{"cachedsql.flush.table_bumps", "Table generations changed (table-wide flushes) by committed writes and Flush calls.", c.tableBumps.Load},
		{"cachedsql.flush.failures", "Writes whose flush could not be recorded, and clears abandoned until their markers expire.", c.flushFailures.Load},
		{"cachedsql.flush.release_retries", "Background retries of clears after COMMIT.", c.releaseRetries.Load},
		{"cachedsql.flush.marker_refreshes", "Rewrites of a running write's markers, so they outlive it.", c.markerRefreshes.Load},
		{"cachedsql.cache.errors", "Cache operations that failed or timed out.", c.cacheErrors.Load},
		{"cachedsql.cache.breaker_trips", "Times the cache circuit breaker opened.", c.breakerTrips.Load},
	}
	var observables []metric.Observable
	counters := make([]metric.Int64ObservableCounter, len(plains))
	for i, p := range plains {
		oc, err := meter.Int64ObservableCounter(p.name, metric.WithDescription(p.desc), metric.WithUnit("{count}"))
		if err != nil {
			return err
		}
		counters[i] = oc
		observables = append(observables, oc)
	}
	statements, err := meter.Int64ObservableCounter("cachedsql.statements",
		metric.WithDescription("Statements run, by op: query (rows) or exec (a result)."), metric.WithUnit("{statement}"))
	if err != nil {
		return err
	}
	bypasses, err := meter.Int64ObservableCounter("cachedsql.bypasses",
		metric.WithDescription("Cacheable lookups sent to the database without the cache, by reason."), metric.WithUnit("{lookup}"))
	if err != nil {
		return err
	}
	breaker, err := meter.Int64ObservableGauge("cachedsql.cache.breaker.state",
		metric.WithDescription("Cache circuit breaker: 0 closed, 1 open, 2 half-open (the worst of the pools')."))
	if err != nil {
		return err
	}
	observables = append(observables, statements, bypasses, breaker)
	m.flushDuration, err = meter.Float64Histogram("cachedsql.flush.duration",
		metric.WithDescription("Time a write's flush spends in the cache: protect (before COMMIT) and the first release attempt (after), by outcome."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
	if err != nil {
		return err
	}
	opQuery := metric.WithAttributeSet(attribute.NewSet(attribute.String("op", "query")))
	opExec := metric.WithAttributeSet(attribute.NewSet(attribute.String("op", "exec")))
	reasons := make([]metric.ObserveOption, len(bypassReasons))
	for i, r := range bypassReasons {
		reasons[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("reason", string(r))))
	}
	m.reg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i, p := range plains {
			o.ObserveInt64(counters[i], int64(p.v()))
		}
		o.ObserveInt64(statements, int64(c.queries.Load()), opQuery)
		o.ObserveInt64(statements, int64(c.execs.Load()), opExec)
		for i := range bypassReasons {
			o.ObserveInt64(bypasses, int64(c.bypasses[i].Load()), reasons[i])
		}
		o.ObserveInt64(breaker, m.breakerState())
		return nil
	}, observables...)
	return err
}

// breakerState is the worst state of the pools' breakers: 0 closed, 1
// open, 2 half-open (a probe may go through).
func (m *meters) breakerState() int64 {
	var state int64
	p := m.guards.Load()
	if p == nil {
		return 0
	}
	for _, g := range *p {
		until := g.openUntil.Load()
		switch {
		case until == 0:
		case g.now().UnixNano() < until:
			state = 1
		case state == 0:
			state = 2
		}
	}
	return state
}
