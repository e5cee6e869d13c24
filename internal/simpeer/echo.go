package simpeer

import "encoding/binary"

// EchoReply returns the reply to pkt when it is an IPv4 ICMP echo request
// (its addresses swapped, type 0, checksum made again), or nil.
func EchoReply(pkt []byte) []byte {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != 1 {
		return nil
	}
	ihl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if ihl < 20 || total > len(pkt) || total < ihl+8 || pkt[ihl] != 8 || pkt[ihl+1] != 0 {
		return nil
	}
	r := append([]byte(nil), pkt[:total]...)
	var a [4]byte
	copy(a[:], r[12:16])
	copy(r[12:16], r[16:20])
	copy(r[16:20], a[:]) // the header checksum sums both: unchanged
	icmp := r[ihl:]
	icmp[0] = 0
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return r
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
