package api

// DaprRuntimeVersionKey is the extended-metadata attribute Dapr always reports with
// the runtime version; it is deprecated in Dapr but SDKs and dashboards still read it.
const DaprRuntimeVersionKey = "daprRuntimeVersion"

// ExtendedMetadata returns the attributes both transports report: the app's, plus
// daprRuntimeVersion as Dapr adds it.
func ExtendedMetadata(m Metadata) map[string]string {
	out := make(map[string]string, len(m.Extended)+1)
	for k, v := range m.Extended {
		out[k] = v
	}
	out[DaprRuntimeVersionKey] = m.RuntimeVersion
	return out
}
