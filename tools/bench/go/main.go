// Scale figures for Go's context, printed as the same `name value unit` lines as
// `cargo bench -p ctxkit --bench scale`, so tools/bench/compare.sh can set them side by
// side. The shapes follow the scale anchor the targets were set from; the timer lateness is
// measured against each context's own deadline (as the Rust benchmark does) and reported as
// p50, p99 and max. As in the Rust benchmark, the wide, deep and timers parts and the
// fan-out of 100,000 goroutines run five times in a row and print the median time and the
// first run's bytes (steady).
//
//	go run . [-size small] [-every-run]
package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// runs is how many times in a row steady runs a part.
const runs = 5

// taken holds the lines of the run steady is in, if it is in one.
var taken *[]figure

// everyRun: steady prints each run's lines too, as NAME/run=K.
var everyRun = flag.Bool("every-run", false, "print each run of a steady part too")

type figure struct {
	name  string
	value float64
	unit  string
}

// steady runs part `runs` times in a row and prints each of its lines once: a time as the
// median of the runs, and bytes as the first run counted them (the run that grew whatever
// the part keeps). Each contender of a part runs on memory it freed itself, whatever its
// place in the process, as scale.rs's `steady` does for ctxkit, tokio-util and the floors.
func steady(part func()) {
	all := make([][]figure, 0, runs)
	for i := 0; i < runs; i++ {
		var lines []figure
		taken = &lines
		part()
		taken = nil
		all = append(all, lines)
	}
	for i, f := range all[0] {
		value := f.value
		if !strings.HasPrefix(f.unit, "B") {
			values := make([]float64, 0, runs)
			for _, run := range all {
				values = append(values, run[i].value)
			}
			sort.Float64s(values)
			value = values[len(values)/2]
		}
		line(f.name, value, f.unit)
		if *everyRun {
			for k, run := range all {
				line(fmt.Sprintf("%s/run=%d", f.name, k+1), run[i].value, f.unit)
			}
		}
	}
}

func line(name string, value float64, unit string) {
	if taken != nil {
		*taken = append(*taken, figure{name, value, unit})
		return
	}
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
	steady(func() { fanout(100000 / div) })
	fanout(1000000 / div)

	// 2) wide: n children of one parent; create, then cancel the parent
	steady(func() { wide(1000000 / div) })
	// 3) deep: a chain of n contexts; create, then cancel the root
	steady(func() { deep(1000000 / div) })
	// 4) n live timers
	steady(func() { timers(1000000 / div) })
	// 5) timer lateness
	lateness(10000 / div)
}

func fanout(n int) {
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

func wide(n int) {
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

func deep(n int) {
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

func timers(n int) {
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

// lateness: n contexts with a 50 ms timeout, each awaited by a goroutine.
func lateness(n int) {
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
