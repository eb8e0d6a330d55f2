package redfish

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/vmrunner/vmrunner/config"
	"github.com/vmrunner/vmrunner/controller"
)

const (
	rootPath     = "/redfish/v1"
	sessionsPath = rootPath + "/SessionService/Sessions"
	managerID    = "BMC"
	mediaID      = "Cd"
)

// paths are the URIs of this service's one system and its neighbours.
type paths struct {
	root, systems, system, reset, resetInfo, nics, cpus string
	secureBoot                                          string
	managers, manager, media, cd, insert, eject         string
	chassisList, chassis, sessionService, sessions      string
}

func newPaths(id string) paths {
	sys := rootPath + "/Systems/" + id
	mgr := rootPath + "/Managers/" + managerID
	cd := mgr + "/VirtualMedia/" + mediaID
	return paths{
		root: rootPath, systems: rootPath + "/Systems", system: sys,
		reset: sys + "/Actions/ComputerSystem.Reset", resetInfo: sys + "/ResetActionInfo",
		nics: sys + "/EthernetInterfaces", cpus: sys + "/Processors", secureBoot: sys + "/SecureBoot",
		managers: rootPath + "/Managers", manager: mgr, media: mgr + "/VirtualMedia", cd: cd,
		insert: cd + "/Actions/VirtualMedia.InsertMedia", eject: cd + "/Actions/VirtualMedia.EjectMedia",
		chassisList: rootPath + "/Chassis", chassis: rootPath + "/Chassis/" + id,
		sessionService: rootPath + "/SessionService", sessions: sessionsPath,
	}
}

type doc = map[string]any

// resource is what one URI answers to; a nil handler is a method the URI
// does not allow.
type resource struct {
	get    func() doc
	patch  func(r *http.Request, body map[string]json.RawMessage) *rfError
	post   func(w http.ResponseWriter, r *http.Request) *rfError
	delete func(w http.ResponseWriter, r *http.Request) *rfError
}

func (r *resource) methods() []string {
	var m []string
	if r.get != nil {
		m = append(m, http.MethodGet, http.MethodHead)
	}
	if r.patch != nil {
		m = append(m, http.MethodPatch)
	}
	if r.post != nil {
		m = append(m, http.MethodPost)
	}
	if r.delete != nil {
		m = append(m, http.MethodDelete)
	}
	return m
}

func (s *service) route(p string) *resource {
	ps := s.paths
	switch p {
	case "/redfish":
		return &resource{get: func() doc { return doc{"v1": rootPath + "/"} }}
	case ps.root:
		return &resource{get: s.serviceRoot}
	case ps.root + "/odata":
		return &resource{get: s.odataService}
	case ps.systems:
		return &resource{get: func() doc {
			return collection(ps.systems, "ComputerSystemCollection", "Computer System Collection", ps.system)
		}}
	case ps.system:
		return &resource{get: s.system, patch: s.patchSystem}
	case ps.reset:
		return &resource{post: s.resetAction}
	case ps.secureBoot:
		return &resource{get: s.secureBootDoc, patch: s.patchSecureBoot}
	case ps.resetInfo:
		return &resource{get: s.resetActionInfo}
	case ps.nics:
		return &resource{get: s.nicCollection}
	case ps.cpus:
		return &resource{get: func() doc {
			return collection(ps.cpus, "ProcessorCollection", "Processors Collection", ps.cpus+"/CPU1")
		}}
	case ps.cpus + "/CPU1":
		return &resource{get: s.processor}
	case ps.managers:
		return &resource{get: func() doc { return collection(ps.managers, "ManagerCollection", "Manager Collection", ps.manager) }}
	case ps.manager:
		return &resource{get: s.manager}
	case ps.media:
		return &resource{get: func() doc { return collection(ps.media, "VirtualMediaCollection", "Virtual Media Services", ps.cd) }}
	case ps.cd:
		return &resource{get: s.virtualMedia}
	case ps.insert:
		return &resource{post: s.insertMedia}
	case ps.eject:
		return &resource{post: s.ejectMedia}
	case ps.chassisList:
		return &resource{get: func() doc { return collection(ps.chassisList, "ChassisCollection", "Chassis Collection", ps.chassis) }}
	case ps.chassis:
		return &resource{get: s.chassisDoc}
	case ps.sessionService:
		return &resource{get: s.sessionService}
	case ps.sessions:
		return &resource{get: s.sessionCollection, post: s.login}
	}
	if id, ok := strings.CutPrefix(p, ps.nics+"/"); ok {
		if nic, ok := s.nic(id); ok {
			return &resource{get: func() doc { return s.nicDoc(nic) }}
		}
	}
	if id, ok := strings.CutPrefix(p, ps.sessions+"/"); ok && s.sessions.exists(id) {
		return &resource{get: func() doc { return s.sessionDoc(id) }, delete: s.logout(id)}
	}
	return nil
}

// writeDoc answers with the document and its ETag, a hash of its content,
// which PATCH's If-Match is compared with.
func (s *service) writeDoc(w http.ResponseWriter, status int, get func() doc) *rfError {
	d := get()
	if d == nil {
		return errNotFound("")
	}
	tag := etag(d)
	d["@odata.etag"] = tag
	w.Header().Set("ETag", tag)
	writeJSON(w, status, d)
	return nil
}

func etag(d doc) string {
	b, _ := json.Marshal(d)
	sum := sha256.Sum256(b)
	return `W/"` + hex.EncodeToString(sum[:8]) + `"`
}

// ifMatch says whether an If-Match header admits the current tag; weak
// and strong forms of one tag are the same here (clients convert them).
func ifMatch(header, tag string) bool {
	if header == "" {
		return true
	}
	bare := strings.TrimPrefix(tag, "W/")
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == bare {
			return true
		}
	}
	return false
}

func (s *service) doPatch(w http.ResponseWriter, r *http.Request, res *resource) *rfError {
	body, err := readObject(r)
	if err != nil {
		return err
	}
	s.patchMu.Lock()
	defer s.patchMu.Unlock()
	if cur := res.get(); !ifMatch(r.Header.Get("If-Match"), etag(cur)) {
		return errPrecondition()
	}
	if err := res.patch(r, body); err != nil {
		return err
	}
	return s.writeDoc(w, http.StatusOK, res.get)
}

func link(p string) doc { return doc{"@odata.id": p} }

func links(ps ...string) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = link(p)
	}
	return out
}

func collection(self, typ, name string, members ...string) doc {
	return doc{
		"@odata.id": self, "@odata.type": "#" + typ + "." + typ, "Name": name,
		"Members@odata.count": len(members), "Members": links(members...),
	}
}

var statusOK = doc{"State": "Enabled", "Health": "OK"}

// derivedUUID is a stable UUID (version 5 layout) for a resource of this
// VM, so the service and manager keep their UUIDs across restarts.
func derivedUUID(seed string) string {
	h := sha1.Sum([]byte("vmrunner redfish " + seed))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	x := hex.EncodeToString(h[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func (s *service) vmUUID(st controller.Status) string {
	if st.UUID != "" {
		return st.UUID
	}
	return derivedUUID("system " + s.opt.SystemID)
}

func (s *service) serviceRoot() doc {
	st := s.api.Status()
	ps := s.paths
	return doc{
		"@odata.id": rootPath + "/", "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
		"Id": "RootService", "Name": "vmrunner Redfish Service", "RedfishVersion": "1.6.0",
		"UUID": derivedUUID("service " + s.vmUUID(st)), "Product": "vmrunner", "Vendor": "vmrunner",
		"ProtocolFeaturesSupported": doc{
			"ExpandQuery": doc{"ExpandAll": false, "Levels": false, "Links": false, "NoLinks": false},
			"FilterQuery": false, "SelectQuery": false, "OnlyMemberQuery": false,
		},
		"Systems": link(ps.systems), "Managers": link(ps.managers), "Chassis": link(ps.chassisList),
		"SessionService": link(ps.sessionService),
		"Links":          doc{"Sessions": link(ps.sessions)},
	}
}

func (s *service) odataService() doc {
	entry := func(name, url string) doc { return doc{"name": name, "kind": "Singleton", "url": url} }
	ps := s.paths
	return doc{
		"@odata.context": rootPath + "/$metadata",
		"value": []any{
			entry("Service", rootPath+"/"), entry("Systems", ps.systems), entry("Managers", ps.managers),
			entry("Chassis", ps.chassisList), entry("SessionService", ps.sessionService), entry("Sessions", ps.sessions),
		},
	}
}

// Redfish names of the controller's states and settings.
var (
	resetTypes     = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle", "Nmi"}
	overrideStates = []string{"Disabled", "Once", "Continuous"}
	bootTargets    = []string{"None", "Pxe", "Hdd", "Cd"}
	bootModes      = []string{"UEFI", "Legacy"}
)

var targetDevice = map[string]controller.BootDevice{
	"None": controller.BootDefault, "Pxe": controller.BootNetwork, "Hdd": controller.BootDisk, "Cd": controller.BootCD,
}

func powerState(p controller.PowerState) string {
	switch p {
	case controller.Running, controller.Paused:
		return "On"
	case controller.Starting:
		return "PoweringOn"
	case controller.Stopping:
		return "PoweringOff"
	}
	return "Off"
}

func bootOverride(b controller.BootOverride) (enabled, target string) {
	for name, dev := range targetDevice {
		if dev == b.Device {
			target = name
		}
	}
	switch {
	case target == "None" || target == "":
		return "Disabled", "None"
	case b.Once:
		return "Once", target
	}
	return "Continuous", target
}

func bootMode(m config.BootMode) string {
	if m == config.BootLegacy {
		return "Legacy"
	}
	return "UEFI"
}

// biosVersion names the firmware of the next start.
func biosVersion(m config.BootMode) string {
	switch m {
	case config.BootLegacy:
		return "SeaBIOS"
	case config.BootSecure:
		return "OVMF (Secure Boot)"
	}
	return "OVMF"
}

func (s *service) system() doc {
	st := s.api.Status()
	ps := s.paths
	enabled, target := bootOverride(st.Boot)
	return doc{
		"@odata.id": ps.system, "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
		"Id": s.opt.SystemID, "Name": st.Name, "SystemType": "Virtual",
		"Manufacturer": "vmrunner", "Model": "QEMU virtual machine",
		"UUID": s.vmUUID(st), "PowerState": powerState(st.Power), "Status": statusOK,
		"Boot": doc{
			"BootSourceOverrideEnabled":                         enabled,
			"BootSourceOverrideEnabled@Redfish.AllowableValues": overrideStates,
			"BootSourceOverrideTarget":                          target,
			"BootSourceOverrideTarget@Redfish.AllowableValues":  bootTargets,
			"BootSourceOverrideMode":                            bootMode(st.BootMode),
			"BootSourceOverrideMode@Redfish.AllowableValues":    bootModes,
		},
		"MemorySummary": doc{"TotalSystemMemoryGiB": float64(st.MemoryMiB) / 1024, "Status": statusOK},
		"ProcessorSummary": doc{"Count": st.CPUs, "LogicalProcessorCount": st.CPUs, "Model": "QEMU vCPU",
			"Status": statusOK},
		"BiosVersion":        biosVersion(st.BootMode),
		"SecureBoot":         link(ps.secureBoot),
		"Processors":         link(ps.cpus),
		"EthernetInterfaces": link(ps.nics),
		"Links": doc{
			"ManagedBy": links(ps.manager), "Chassis": links(ps.chassis),
		},
		"Actions": doc{"#ComputerSystem.Reset": doc{
			"target": ps.reset, "ResetType@Redfish.AllowableValues": resetTypes,
			"@Redfish.ActionInfo": ps.resetInfo,
		}},
	}
}

func (s *service) resetActionInfo() doc {
	return doc{
		"@odata.id": s.paths.resetInfo, "@odata.type": "#ActionInfo.v1_1_0.ActionInfo",
		"Id": "ResetActionInfo", "Name": "Reset Action Info",
		"Parameters": []any{doc{"Name": "ResetType", "Required": true, "DataType": "String", "AllowableValues": resetTypes}},
	}
}

func (s *service) processor() doc {
	st := s.api.Status()
	return doc{
		"@odata.id": s.paths.cpus + "/CPU1", "@odata.type": "#Processor.v1_7_0.Processor",
		"Id": "CPU1", "Name": "Processor", "ProcessorType": "CPU",
		"ProcessorArchitecture": "x86", "InstructionSet": "x86-64",
		"TotalCores": st.CPUs, "TotalThreads": st.CPUs, "Status": statusOK,
	}
}

func (s *service) nic(id string) (controller.NIC, bool) {
	for _, n := range s.api.Status().NICs {
		if strconv.Itoa(n.Index) == id {
			return n, true
		}
	}
	return controller.NIC{}, false
}

func (s *service) nicCollection() doc {
	var ms []string
	for _, n := range s.api.Status().NICs {
		ms = append(ms, s.paths.nics+"/"+strconv.Itoa(n.Index))
	}
	return collection(s.paths.nics, "EthernetInterfaceCollection", "Ethernet Interface Collection", ms...)
}

func (s *service) nicDoc(n controller.NIC) doc {
	id := strconv.Itoa(n.Index)
	return doc{
		"@odata.id": s.paths.nics + "/" + id, "@odata.type": "#EthernetInterface.v1_4_0.EthernetInterface",
		"Id": id, "Name": "NIC " + id, "Description": n.Mode + " network",
		"MACAddress": n.MAC, "PermanentMACAddress": n.MAC, "InterfaceEnabled": true,
		"LinkStatus": "LinkUp", "Status": statusOK,
	}
}

func (s *service) manager() doc {
	st := s.api.Status()
	ps := s.paths
	return doc{
		"@odata.id": ps.manager, "@odata.type": "#Manager.v1_5_0.Manager",
		"Id": managerID, "Name": "vmrunner BMC", "ManagerType": "BMC", "Model": "vmrunner",
		"FirmwareVersion": s.opt.Version, "UUID": derivedUUID("manager " + s.vmUUID(st)),
		"PowerState": "On", "Status": statusOK,
		"VirtualMedia": link(ps.media),
		"Links": doc{
			"ManagerForServers": links(ps.system), "ManagerForChassis": links(ps.chassis),
		},
	}
}

func (s *service) virtualMedia() doc {
	m := s.api.Status().Media
	ps := s.paths
	d := doc{
		"@odata.id": ps.cd, "@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia",
		"Id": mediaID, "Name": "Virtual CD", "MediaTypes": []string{"CD", "DVD"},
		"Image": nil, "ImageName": nil, "Inserted": false, "WriteProtected": true,
		"ConnectedVia": "NotConnected", "TransferMethod": "Stream",
		"Actions": doc{
			"#VirtualMedia.InsertMedia": doc{"target": ps.insert},
			"#VirtualMedia.EjectMedia":  doc{"target": ps.eject},
		},
	}
	if m.Source != "" {
		d["Image"], d["Inserted"], d["ConnectedVia"] = m.Source, true, "URI"
		d["ImageName"] = path.Base(m.Source)
		if u, err := url.Parse(m.Source); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			d["ImageName"] = path.Base(u.Path)
			d["TransferProtocolType"] = strings.ToUpper(u.Scheme)
		}
	}
	return d
}

func (s *service) chassisDoc() doc {
	st := s.api.Status()
	ps := s.paths
	return doc{
		"@odata.id": ps.chassis, "@odata.type": "#Chassis.v1_10_0.Chassis",
		"Id": s.opt.SystemID, "Name": fmt.Sprintf("Chassis of %s", st.Name), "ChassisType": "Other",
		"Manufacturer": "vmrunner", "UUID": s.vmUUID(st), "PowerState": powerState(st.Power), "Status": statusOK,
		"Links": doc{"ComputerSystems": links(ps.system), "ManagedBy": links(ps.manager)},
	}
}

func (s *service) secureBootDoc() doc {
	on := s.api.Status().BootMode == config.BootSecure
	current := "Disabled"
	if on {
		current = "Enabled"
	}
	return doc{
		"@odata.id": s.paths.secureBoot, "@odata.type": "#SecureBoot.v1_1_0.SecureBoot",
		"Id": "SecureBoot", "Name": "UEFI Secure Boot", "SecureBootEnable": on,
		"SecureBootCurrentBoot": current, "SecureBootMode": "DeployedMode",
	}
}
