package bench

import "testing"

func TestSummarize(t *testing.T) {
	s := summarize([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 {
		t.Fatalf("%+v", s)
	}
	if q := quantile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99); q < 9.9 || q > 10 {
		t.Fatalf("p99 = %v", q)
	}
}
