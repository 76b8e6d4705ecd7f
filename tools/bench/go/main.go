// Scale figures for Go's context, printed as the same `name value unit` lines as
// `cargo bench -p ctxkit --bench scale`, so tools/bench/compare.sh can set them side by
// side. The shapes follow the scale anchor the targets were set from; the timer lateness is
// measured against each context's own deadline (as the Rust benchmark does) and reported as
// p50, p99 and max.
//
//	go run . [-size small]
package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"
)

func line(name string, value float64, unit string) {
	if unit == "ms" {
		fmt.Printf("%s %.3f %s\n", name, value, unit)
	} else {
		fmt.Printf("%s %.1f %s\n", name, value, unit)
	}
}

func per(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

func heap() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func main() {
	size := flag.String("size", "full", "full, or small (sizes / 100)")
	flag.Parse()
	div := 1
	if *size == "small" {
		div = 100
	}

	// 1) fan-out: n goroutines waiting on one ctx; time from cancel to all woken
	for _, n := range []int{100000 / div, 1000000 / div} {
		ctx, cancel := context.WithCancel(context.Background())
		var ready, done sync.WaitGroup
		ready.Add(n)
		done.Add(n)
		for i := 0; i < n; i++ {
			go func() { ready.Done(); <-ctx.Done(); done.Done() }()
		}
		ready.Wait()
		time.Sleep(100 * time.Millisecond)
		t := time.Now()
		cancel()
		done.Wait()
		line(fmt.Sprintf("fanout_wake/tasks=%d", n), per(time.Since(t), n), "ns/waiter")
	}

	// 2) wide: n children of one parent; create, then cancel the parent
	{
		n := 1000000 / div
		runtime.GC()
		m0 := heap()
		root, cancel := context.WithCancel(context.Background())
		t := time.Now()
		kids := make([]context.Context, n)
		for i := range kids {
			kids[i], _ = context.WithCancel(root)
		}
		c := time.Since(t)
		m1 := heap()
		t = time.Now()
		cancel()
		cn := time.Since(t)
		line(fmt.Sprintf("wide/n=%d/create", n), per(c, n), "ns/child")
		line(fmt.Sprintf("wide/n=%d/bytes", n), float64(m1-m0)/float64(n), "B/child")
		line(fmt.Sprintf("wide/n=%d/cancel", n), per(cn, n), "ns/child")
		runtime.KeepAlive(kids)
	}

	// 3) deep: a chain of n contexts; create, then cancel the root
	{
		n := 1000000 / div
		runtime.GC()
		m0 := heap()
		root, cancel := context.WithCancel(context.Background())
		t := time.Now()
		c := root
		for i := 0; i < n; i++ {
			c, _ = context.WithCancel(c)
		}
		cr := time.Since(t)
		m1 := heap()
		t = time.Now()
		cancel()
		<-c.Done()
		cn := time.Since(t)
		line(fmt.Sprintf("deep/n=%d/create", n), per(cr, n), "ns/level")
		line(fmt.Sprintf("deep/n=%d/bytes", n), float64(m1-m0)/float64(n), "B/level")
		line(fmt.Sprintf("deep/n=%d/cancel", n), per(cn, n), "ns/level")
	}

	// 4) n live timers
	{
		n := 1000000 / div
		runtime.GC()
		m0 := heap()
		t := time.Now()
		cs := make([]context.CancelFunc, n)
		for i := range cs {
			_, cs[i] = context.WithTimeout(context.Background(), time.Hour)
		}
		c := time.Since(t)
		m1 := heap()
		t = time.Now()
		for _, f := range cs {
			f()
		}
		cn := time.Since(t)
		line(fmt.Sprintf("timers/n=%d/create", n), per(c, n), "ns")
		line(fmt.Sprintf("timers/n=%d/bytes", n), float64(m1-m0)/float64(n), "B")
		line(fmt.Sprintf("timers/n=%d/cancel", n), per(cn, n), "ns")
	}

	// 5) timer lateness: n contexts with a 50 ms timeout, each awaited by a goroutine
	{
		n := 10000 / div
		var wg sync.WaitGroup
		wg.Add(n)
		lat := make([]time.Duration, n)
		for i := 0; i < n; i++ {
			ctx, _ := context.WithTimeout(context.Background(), 50*time.Millisecond)
			go func(i int) {
				<-ctx.Done()
				dl, _ := ctx.Deadline()
				lat[i] = time.Since(dl)
				wg.Done()
			}(i)
		}
		wg.Wait()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		pick := func(q float64) time.Duration { return lat[int(float64(n-1)*q+0.5)] }
		ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
		line(fmt.Sprintf("timer_lateness/n=%d/min", n), ms(pick(0)), "ms")
		line(fmt.Sprintf("timer_lateness/n=%d/p10", n), ms(pick(0.1)), "ms")
		line(fmt.Sprintf("timer_lateness/n=%d/p90", n), ms(pick(0.9)), "ms")
		line(fmt.Sprintf("timer_lateness/n=%d/p50", n), ms(pick(0.5)), "ms")
		line(fmt.Sprintf("timer_lateness/n=%d/p99", n), ms(pick(0.99)), "ms")
		line(fmt.Sprintf("timer_lateness/n=%d/max", n), ms(lat[n-1]), "ms")
	}
}
