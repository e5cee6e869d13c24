package mesh

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weftnet/weft/internal/atomicfile"
)

// The awake record (docs/design.md, "On-demand peers"): with on-demand
// peers, a peer new to the mesh starts resting unless the previous run had
// it on the device. A peer another node holds a session with must start
// awake, with the start's keepalive, so that session is replaced at once
// (the other end would otherwise send into a session this run does not
// have until its own 15 s timeout); every other peer has no session at
// either end and waits for its first packet or handshake. At thousands of
// nodes, writing every peer at the start held all their queues at once
// (~600 MiB at 5000; issue 31).
//
// The record is the set of peers on the device that may rest, written at
// most once a second after a rest or a wake (and at a stop); a crash loses
// at most that second: a peer woken in it starts resting, and its first
// packet either way, or the other end's 15 s re-handshake, wakes it.

// awakeRecordVersion is the record's format; another is ignored (as no record).
const awakeRecordVersion = 1

// maxAwakeRecord bounds what is read: 5000 keys are ~240 KB of JSON.
const maxAwakeRecord = 4 << 20

// awakeEvery is the least time between two writes of the record.
const awakeEvery = time.Second

type awakeRecord struct {
	Version int      `json:"version"`
	Awake   []string `json:"awake"`
}

// ReadAwake reads the awake record at path: the peers the last run had on
// its device, and whether there was a record. A record of another version
// is no record; one that cannot be read is an error.
func ReadAwake(path string) (map[wgtypes.Key]bool, bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAwakeRecord+1))
	if err != nil {
		return nil, false, err
	}
	if len(b) > maxAwakeRecord {
		return nil, false, fmt.Errorf("awake record %s: over %d bytes", path, maxAwakeRecord)
	}
	var r awakeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, false, fmt.Errorf("awake record %s: %w", path, err)
	}
	if r.Version != awakeRecordVersion {
		return nil, false, nil
	}
	out := make(map[wgtypes.Key]bool, len(r.Awake))
	for _, s := range r.Awake {
		k, err := wgtypes.ParseKey(s)
		if err != nil {
			return nil, false, fmt.Errorf("awake record %s: %q is not a key", path, s)
		}
		out[k] = true
	}
	return out, true, nil
}

// awake lists the peers on the device that may rest, sorted. Under m.mu.
func (o *onDemand) awake() []string {
	out := make([]string, 0, max(len(o.desired)-len(o.resting), 0))
	for k := range o.desired {
		if _, rests := o.resting[k]; !rests {
			out = append(out, k.String())
		}
	}
	slices.Sort(out)
	return out
}

// changed asks for the record to be written (the awake set may differ).
func (o *onDemand) changed() {
	if o.cfg.Record == "" {
		return
	}
	select {
	case o.recordDue <- struct{}{}:
	default:
	}
}

// recordLoop writes the record when asked, at most once per awakeEvery,
// until the device stops.
func (m *Mesh) recordLoop(o *onDemand) {
	for {
		select {
		case <-m.dev.Done():
			return
		case <-o.recordDue:
		}
		if err := m.writeRecord(o); err != nil {
			m.dev.logger.Warn("cannot write the awake record", "err", err)
		}
		select {
		case <-m.dev.Done():
			return
		case <-time.After(awakeEvery):
		}
	}
}

// writeRecord writes the awake set when it changed since the last write,
// unless a successor runs the data plane (the record is its).
func (m *Mesh) writeRecord(o *onDemand) error {
	o.recordMu.Lock()
	defer o.recordMu.Unlock()
	m.mu.Lock()
	if o.desired == nil || m.dev.released.Load() {
		m.mu.Unlock()
		return nil // no Apply yet: nothing known
	}
	awake := o.awake()
	m.mu.Unlock()
	if o.recorded != nil && slices.Equal(awake, o.recorded) {
		return nil
	}
	b, err := json.Marshal(awakeRecord{Version: awakeRecordVersion, Awake: awake})
	if err != nil {
		return err
	}
	if err := atomicfile.Write(o.cfg.Record, b, 0o600); err != nil {
		return err
	}
	o.recorded = awake
	return nil
}
