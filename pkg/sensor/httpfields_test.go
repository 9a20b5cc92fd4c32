package sensor

import (
	"reflect"
	"slices"
	"testing"

	"github.com/xtrail/xtrail/pkg/heuristics"
	"github.com/xtrail/xtrail/pkg/trails"
)

// TestAgentHTTPFields: handleHTTP sets heuristics.HTTP and
// trails.HTTPRequest field by field, so a field added to either would be
// left from the request before: this fails until handleHTTP sets it and
// the list here names it.
func TestAgentHTTPFields(t *testing.T) {
	for _, c := range []struct {
		v    any
		want []string
	}{
		{heuristics.HTTP{}, []string{"Sec", "Src", "Dst", "SrcPort", "DstPort", "Method", "Host", "Path", "Body", "Forwarded", "Req", "Whitelist"}},
		{trails.HTTPRequest{}, []string{"Host", "Path", "Method", "Body", "URL", "HostClear"}},
	} {
		typ := reflect.TypeOf(c.v)
		var got []string
		for i := range typ.NumField() {
			got = append(got, typ.Field(i).Name)
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(c.want))
		if !slices.Equal(got, want) {
			t.Errorf("%v has fields %v; handleHTTP sets %v", typ, got, want)
		}
	}
}
