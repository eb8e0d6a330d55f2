package redfish

import (
	"net/http"
	"strings"
)

// schemas are the DMTF namespaces this service's documents use, each with
// the version its @odata.type names.
var schemas = [][2]string{
	{"ServiceRoot", "v1_5_0"},
	{"ComputerSystemCollection", ""},
	{"ComputerSystem", "v1_10_0"},
	{"ActionInfo", "v1_1_0"},
	{"SecureBoot", "v1_1_0"},
	{"ProcessorCollection", ""},
	{"Processor", "v1_7_0"},
	{"EthernetInterfaceCollection", ""},
	{"EthernetInterface", "v1_4_0"},
	{"ManagerCollection", ""},
	{"Manager", "v1_5_0"},
	{"VirtualMediaCollection", ""},
	{"VirtualMedia", "v1_3_0"},
	{"ChassisCollection", ""},
	{"Chassis", "v1_10_0"},
	{"SessionService", "v1_1_0"},
	{"SessionCollection", ""},
	{"Session", "v1_0_0"},
	{"Message", "v1_1_1"},
	{"Resource", "v1_0_0"},
}

// metadata is the CSDL document at /redfish/v1/$metadata: references to
// the DMTF schemas (by their published URIs, which clients only compare)
// and the service's entity container.
var metadata = func() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<edmx:Edmx xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx" Version="4.0">
`)
	for _, s := range schemas {
		b.WriteString(`  <edmx:Reference Uri="http://redfish.dmtf.org/schemas/v1/` + s[0] + `_v1.xml">
    <edmx:Include Namespace="` + s[0] + `"/>
`)
		if s[1] != "" {
			b.WriteString(`    <edmx:Include Namespace="` + s[0] + `.` + s[1] + `"/>
`)
		}
		b.WriteString("  </edmx:Reference>\n")
	}
	b.WriteString(`  <edmx:DataServices>
    <Schema xmlns="http://docs.oasis-open.org/odata/ns/edm" Namespace="Service">
      <EntityContainer Name="Service" Extends="ServiceRoot.v1_5_0.ServiceContainer"/>
    </Schema>
  </edmx:DataServices>
</edmx:Edmx>
`)
	return b.String()
}()

func writeMetadata(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Write([]byte(metadata))
}
