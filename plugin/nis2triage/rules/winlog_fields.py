"""Which EventData fields Winlogbeat moves to which ECS fields, per Sysmon event and channel.

Facts taken from Winlogbeat's Sysmon module (x-pack/winlogbeat/module/sysmon) and
its security and powershell modules; only the renames, not the enrichments.
"""

from __future__ import annotations

_PROCESS = {
    "ProcessGuid": "process.entity_id",
    "ProcessId": "process.pid",
    "Image": "process.executable",
}
_PROCESS_PE = {
    "Company": "process.pe.company",
    "Description": "process.pe.description",
    "FileVersion": "process.pe.file_version",
    "Product": "process.pe.product",
    "OriginalFileName": "process.pe.original_file_name",
}
_FILE_PE = {key: value.replace("process.", "file.") for key, value in _PROCESS_PE.items()}
_SIGNATURE = {
    "Signature": "file.code_signature.subject_name",
    "SignatureStatus": "file.code_signature.status",
}
_FILE_STATE = {
    "TargetFilename": "file.path",
    "Archived": "sysmon.file.archived",
    "IsExecutable": "sysmon.file.is_executable",
}

# Sysmon EventData name -> ECS field, per Sysmon event id.
SYSMON_ECS: dict[int, dict[str, str]] = {
    1: {
        **_PROCESS,
        **_PROCESS_PE,
        "CommandLine": "process.command_line",
        "CurrentDirectory": "process.working_directory",
        "ParentProcessGuid": "process.parent.entity_id",
        "ParentProcessId": "process.parent.pid",
        "ParentImage": "process.parent.executable",
        "ParentCommandLine": "process.parent.command_line",
    },
    2: {**_PROCESS, "TargetFilename": "file.path"},
    3: {
        **_PROCESS,
        "Protocol": "network.transport",
        "SourceIp": "source.ip",
        "SourceHostname": "source.domain",
        "SourcePort": "source.port",
        "DestinationIp": "destination.ip",
        "DestinationHostname": "destination.domain",
        "DestinationPort": "destination.port",
        "DestinationPortName": "network.protocol",
    },
    5: _PROCESS,
    6: {"ImageLoaded": "file.path", **_SIGNATURE},
    7: {**_PROCESS, **_FILE_PE, **_SIGNATURE, "ImageLoaded": "file.path"},
    8: {
        "SourceProcessGuid": "process.entity_id",
        "SourceProcessId": "process.pid",
        "SourceImage": "process.executable",
    },
    9: {**_PROCESS, "Device": "file.path"},
    10: {
        "SourceProcessGUID": "process.entity_id",
        "SourceProcessId": "process.pid",
        "SourceThreadId": "process.thread.id",
        "SourceImage": "process.executable",
    },
    11: {**_PROCESS, "TargetFilename": "file.path"},
    12: {**_PROCESS, "TargetObject": "registry.path"},
    13: {**_PROCESS, "TargetObject": "registry.path"},
    14: {**_PROCESS, "TargetObject": "registry.path"},
    15: {**_PROCESS, "TargetFilename": "file.path"},
    17: {**_PROCESS, "PipeName": "file.name"},
    18: {**_PROCESS, "PipeName": "file.name"},
    20: {"Destination": "process.executable"},
    22: {**_PROCESS, "QueryName": "dns.question.name", "QueryStatus": "sysmon.dns.status"},
    23: {**_PROCESS, **_FILE_STATE},
    24: {**_PROCESS, **_FILE_STATE},
    25: {**_PROCESS, **_FILE_STATE},
    26: {**_PROCESS, **_FILE_STATE},
}

# The Security and PowerShell channels, as Winlogbeat's security and powershell modules map them.
CHANNEL_ECS: dict[str, dict[str, str]] = {
    "Security": {
        "SubjectUserName": "user.name",
        "SubjectDomainName": "user.domain",
        "SubjectUserSid": "user.id",
        "SubjectLogonId": "winlog.logon.id",
        "NewProcessName": "process.executable",
        "ProcessName": "process.executable",
        "CommandLine": "process.command_line",
        "ParentProcessName": "process.parent.executable",
        "ServiceName": "service.name",
        "IpAddress": "source.ip",
        "IpPort": "source.port",
        "WorkstationName": "source.domain",
    },
    "Microsoft-Windows-PowerShell/Operational": {
        "ScriptBlockText": "powershell.file.script_block_text",
        "ScriptBlockId": "powershell.file.script_block_id",
        "Path": "file.path",
    },
}
