package main

import "testing"

// BenchmarkCommonParentCancelSpinOnly is the floor of Go's BenchmarkCommonParentCancel
// (src/context/benchmark_test.go): its 200 divisions per op alone, on as many goroutines,
// so the cost of the context operations can be told apart from the spin. The Rust suite
// has the same benchmark (ctxkit/CommonParentCancelSpinOnly).
func BenchmarkCommonParentCancelSpinOnly(b *testing.B) {
	b.RunParallel(func(pb *testing.PB) {
		x := 0
		for pb.Next() {
			for i := 0; i < 100; i++ {
				x /= x + 1
			}
			for i := 0; i < 100; i++ {
				x /= x + 1
			}
		}
	})
}
