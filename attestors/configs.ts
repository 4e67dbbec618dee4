// Config schemas of the optional attestors, keyed by the plugin name (`attestors.<name>` in the YAML).
// A section present enables the attestor.
export const OPTIONAL_ATTESTOR_CONFIGS = {} as const;
