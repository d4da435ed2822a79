"""The configuration: the schema (frozen dataclasses, one source of truth for keys, defaults and help),
YAML loading with `--set` overrides, validation that names every problem, limits and the shipped configs.

`from seqclf.config import Config, load_config` is the public face; the modules below it are
`schema` (the dataclasses), `load` (reading and checking), `limits`, `safe_yaml` and `shipped`.
"""

from seqclf.config.load import (
                                ConfigError,
                                apply_overrides,
                                config_from_dict,
                                load_config,
                                parse_overrides,
                                read_yaml,
                                suggest,
)
from seqclf.config.schema import (
                                AUTO,
                                MAX_THREADS,
                                ROLES,
                                SECTIONS,
                                WHERE,
                                Config,
                                DataConfig,
                                ModelConfig,
                                OutputConfig,
                                TrainConfig,
                                all_keys,
                                config_diff,
                                describe_keys,
                                field_of,
                                fields_of,
                                flatten,
                                hints_of,
                                keys_where,
                                reference_markdown,
                                replace,
                                to_dict,
                                to_yaml,
                                type_name,
)

__all__ = ["AUTO", "MAX_THREADS", "ROLES", "SECTIONS", "WHERE", "Config", "ConfigError", "DataConfig", "ModelConfig",
           "OutputConfig", "TrainConfig", "all_keys", "apply_overrides", "config_diff", "config_from_dict",
           "describe_keys", "field_of", "fields_of", "flatten", "hints_of", "keys_where", "load_config",
           "parse_overrides", "read_yaml", "reference_markdown", "replace", "suggest", "to_dict", "to_yaml",
           "type_name"]
