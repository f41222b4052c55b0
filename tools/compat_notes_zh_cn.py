"""Chinese notes of the generated table in docs/zh_cn/xtuner_compat.md (used by tools/build_compat_page.py).

Keys are the English notes exactly as `build_compat_page.all_rows()` writes them. Notes built from a template are
translated by the template in build_compat_page.py: "only XTuner's default; <reason>" looks up only <reason> here.
A note with no entry stops the generator, so a new English note in the code is caught.
"""

from __future__ import annotations

NOTES_ZH_CN: dict[str, str] = {
    # modules, package names, presets, the CLI
    "the CLI flags are parsed in `xtuner_nb.train.cli`": "命令行参数在 `xtuner_nb.train.cli` 中解析",
    # XTuner names importable here that refuse to be used (xtuner_nb._unsupported), and methods with no counterpart
    "GLM-5.2 is a MoE model; this project trains dense text models (use ChatMessages)":
        "GLM-5.2 是 MoE 模型；本项目训练稠密文本模型（请用 ChatMessages）",
    "Qwen3.5 is a vision-language model; this project trains dense text models (use ChatMessages)":
        "Qwen3.5 是视觉语言模型；本项目训练稠密文本模型（请用 ChatMessages）",
    "RL data is not supported": "不支持 RL 数据",
    "vision-language data is not supported (this project trains dense text models)":
        "不支持视觉语言数据（本项目训练稠密文本模型）",
    "XTuner's chunked tokenization of very long pretraining texts is not implemented; PretrainTokenizeFunctionConfig "
    "tokenizes each text whole":
        "未实现 XTuner 对超长预训练文本的分块 tokenize；PretrainTokenizeFunctionConfig 对每条文本整体 tokenize",
    "XTuner's debug packing (pack_level='__legacy'); use ExpandSoftPackDataset":
        "XTuner 的调试用打包方式（pack_level='__legacy'）；请用 ExpandSoftPackDataset",
    "XTuner's preset packs and sampler replay an order saved by an offline tool; not implemented (use "
    "pack_level='soft' or 'hard')":
        "XTuner 的预设打包与采样器重放离线工具保存的顺序；未实现（请用 pack_level='soft' 或 'hard'）",
    "XTuner's older template class (with meta_instruction); every template here is a HybridChatTemplate: use "
    "CHAT_TEMPLATE_MAP[name] or HybridChatTemplate(...)":
        "XTuner 较旧的模板类（带 meta_instruction）；这里的模板都是 HybridChatTemplate：请用 "
        "CHAT_TEMPLATE_MAP[name] 或 HybridChatTemplate(...)",
    "float8 training needs XTuner's FP8 GEMM kernels (AdaptiveGEMM, Triton) and a GPU with FP8 tensor cores "
    "(compute capability 8.9 or newer); it is not implemented here, train in bf16":
        "float8 训练需要 XTuner 的 FP8 GEMM 内核（AdaptiveGEMM、Triton）和带 FP8 张量核心的 GPU（计算能力 8.9 "
        "及以上）；这里未实现，请用 bf16 训练",
    "it caches DeepSeek sparse-attention top-k indices between the layers of MoE models, which are not supported "
    "(dense models only)":
        "它在 MoE 模型的层之间缓存 DeepSeek 稀疏注意力的 top-k 索引，而这里不支持 MoE 模型（仅支持稠密模型）",
    "XTuner's agent fields (functions, code interpreter) are not in this template class":
        "这个模板类没有 XTuner 的智能体字段（functions、代码解释器）",
    "XTuner's build steps (its TrainEngine); the Trainer builds its parts in xtuner_nb.train.build":
        "XTuner 的构建步骤（其 TrainEngine）；这里的 Trainer 在 xtuner_nb.train.build 中构建各部分",
    "XTuner's packing step; here the packs are planned by datasets.packing.plan_soft":
        "XTuner 的打包步骤；这里由 datasets.packing.plan_soft 规划打包",
    "XTuner's steps of reading a file (byte offsets, then token counts); here a file is tokenized once when the "
    "dataset is built":
        "XTuner 读取文件的步骤（先算字节偏移，再数 token）；这里在构建数据集时对文件只 tokenize 一次",
    "XTuner's two loss kernels; here loss_cfg.mode picks one inside forward":
        "XTuner 的两种 loss 计算方式；这里由 loss_cfg.mode 在 forward 中选择",
    "a no-op in XTuner (for transformers' RoPE helpers); RoPE parameters come from rope_parameters_cfg here":
        "在 XTuner 中是空操作（为 transformers 的 RoPE 工具函数而设）；这里 RoPE 参数来自 rope_parameters_cfg",
    "the base class has no build here; AdamWConfig.build(params) builds the optimizer":
        "这里的基类没有 build；由 AdamWConfig.build(params) 构建优化器",
    "used by XTuner's sequence-parallel attention, which is not implemented": "用于 XTuner 的序列并行注意力，这里未实现",
    "False keeps every pack, the last global batch may be short (XTuner drops the packs after the last whole "
    "global batch)":
        "为 False 时保留所有打包，最后一个全局批次可能不满（XTuner 丢弃最后一个完整全局批次之后的打包）",
    # callables whose signatures differ for a reason the signatures alone do not tell
    "built by build_dataloader or DataloaderConfig.build, as XTuner's; XTuner's class passes its arguments on to "
    "torch's DataLoader":
        "与 XTuner 一样由 build_dataloader 或 DataloaderConfig.build 构建；XTuner 的类把参数原样传给 torch 的 "
        "DataLoader",
    "keyword arguments only, as XTuner's; each is a TrainerConfig field (its rows compare them), `backend=` is "
    "`dist_backend`; here also `hooks=` and `show_dashboard=`":
        "与 XTuner 一样只接受关键字参数；每个都是 TrainerConfig 的字段（由其各行比较），`backend=` 即 "
        "`dist_backend`；这里另有 `hooks=` 和 `show_dashboard=`",
    "returns one tokenized file per data file of anno_path (XTuner: one JsonlDataset); build_datasets gives "
    "XTuner's JsonlDatasets":
        "对 anno_path 下的每个数据文件返回一个已 tokenize 的文件（XTuner：一个 JsonlDataset）；build_datasets 返回 "
        "XTuner 的 JsonlDataset",
    "not implemented": "未实现",
    "not implemented (see the config rows)": "未实现（见配置字段的各行）",
    "MoE models are not supported (dense Qwen3, Qwen2 and Llama only)":
        "不支持 MoE 模型（仅支持稠密的 Qwen3、Qwen2 和 Llama）",
    "dense text models only (Qwen3, Qwen2/Qwen2.5, Llama)": "仅支持稠密文本模型（Qwen3、Qwen2/Qwen2.5、Llama）",
    "RL and multi-token prediction are not supported": "不支持 RL 和多 token 预测",
    "not a dense text model supported here (MoE / vision-language / another architecture)":
        "不是这里支持的稠密文本模型（MoE / 视觉语言 / 其他架构）",
    "values are checked by the config field of the same name": "取值由同名的配置字段检查",
    "openai and (ours) pretrain; ftdp is refused (XTuner's internal format)":
        "openai 和（本项目的）pretrain；ftdp 会报错（XTuner 的内部格式）",
    "AdamW; Muon is refused (not implemented)": "AdamW；Muon 会报错（未实现）",
    "refused: float8 training is not implemented": "报错：float8 训练未实现",
    "only true (a checkpoint always restores the model)": "只能为 true（检查点总会恢复模型）",
    "XTuner's names plus this project's templates": "XTuner 的模板名，外加本项目的模板",
    "a list of dataset configs is not given on the command line here; use --dataset with a .py file defining "
    "`datasets`": "这里不在命令行上给出数据集配置列表；请用 --dataset 指定一个定义了 `datasets` 的 .py 文件",
    # config fields: different defaults
    "True here: transformers' Qwen3 always has q/k norms (XTuner's Qwen3 presets set True)":
        "这里为 True：transformers 的 Qwen3 总有 q/k norm（XTuner 的 Qwen3 预设也设为 True）",
    "XTuner's Qwen3DenseConfig has no defaults for the model shape; here they are Qwen3-8B's":
        "XTuner 的 Qwen3DenseConfig 没有模型结构的默认值；这里取 Qwen3-8B 的值",
    "XTuner's TransformerConfig has no defaults for the model shape; here they are Qwen3-8B's (Qwen3DenseConfig)":
        "XTuner 的 TransformerConfig 没有模型结构的默认值；这里取 Qwen3-8B 的值（Qwen3DenseConfig）",
    "rope_theta 1e6 here (Qwen3's); XTuner's base class has 10000":
        "这里 rope_theta 为 1e6（Qwen3 的值）；XTuner 的基类为 10000",
    "required in XTuner; Qwen3-8B's value here": "XTuner 中必填；这里默认取 Qwen3-8B 的值",
    "required in XTuner; DataloaderConfig() here": "XTuner 中必填；这里默认为 DataloaderConfig()",
    "required in XTuner; AdamWConfig() here": "XTuner 中必填；这里默认为 AdamWConfig()",
    "required in XTuner; LRConfig() here": "XTuner 中必填；这里默认为 LRConfig()",
    "required in XTuner; None (one pack per rank) here": "XTuner 中必填；这里默认为 None（每个 rank 一个 pack）",
    "a class attribute here (config.json's model_type, e.g. 'qwen3'); None or the class's own value is accepted as "
    "an argument": "这里是类属性（config.json 的 model_type，如 'qwen3'）；作为参数时接受 None 或该类自己的值",
    # config fields: implemented in another way
    "'tensorboard' writes TensorBoard event files next to tracker.jsonl (which is always written: resume and "
    "`trainer.history` read it)":
        "'tensorboard' 在 tracker.jsonl 旁写 TensorBoard 事件文件（tracker.jsonl 总会写入：恢复训练和 "
        "`trainer.history` 都读取它）",
    "mapped onto auto_resume and load_checkpoint_cfg (XTuner reads only its auto_resume)":
        "映射到 auto_resume 和 load_checkpoint_cfg（XTuner 只读取其中的 auto_resume）",
    "steps are 1-based; the profile spans the end of step N-1 to the end of step N":
        "步数从 1 开始；分析范围是第 N-1 步结束到第 N 步结束",
    "CUDA: allocator snapshot as XTuner; CPU: the profiler's memory timeline":
        "CUDA：与 XTuner 相同的显存分配器快照；CPU：profiler 的内存时间线",
    "DEBUG lines on the console": "在控制台输出 DEBUG 日志",
    "None means ./work_dir here (XTuner: the current folder)": "None 在这里表示 ./work_dir（XTuner：当前目录）",
    "checkpoints/snapshot-step-N, only the newest kept; auto_resume takes the newest checkpoint or snapshot":
        "checkpoints/snapshot-step-N，只保留最新的一个；auto_resume 取最新的检查点或快照",
    "torch DCP async_save; the checkpoint counts (train_state.json) once its weights are written, at the next save "
    "or the end of fit": "torch DCP 的 async_save；权重写完（下一次保存或 fit 结束时）检查点才生效（train_state.json）",
    "'liger' needs the liger-kernel package (CUDA) and is refused without it":
        "'liger' 需要 liger-kernel 包（CUDA），未安装时会报错",
    "None is accepted in eager mode (ignored) and refused in chunk mode, as XTuner asserts":
        "eager 模式接受 None（忽略），chunk 模式下报错，与 XTuner 的断言一致",
    "also takes a custom BaseLossConfig; None: the model config's lm_loss_cfg":
        "也接受自定义的 BaseLossConfig；None：使用模型配置的 lm_loss_cfg",
    "called after the optimizer step; train_step_info is the metrics row":
        "在优化器步之后调用；train_step_info 是该步的指标行",
    "chunk mode of a custom loss runs loss_fn per chunk (no recompute in the backward)":
        "自定义损失的 chunk 模式逐块调用 loss_fn（反向时不重新计算）",
    "flash_attention / flex_attention / eager_attention all run the packed varlen attention (flash kernel on CUDA, "
    "per-sample SDPA on CPU); sdpa / eager / varlen are this project's names":
        "flash_attention / flex_attention / eager_attention 都运行 pack 的 varlen 注意力（CUDA 上用 flash 内核，"
        "CPU 上逐样本调用 SDPA）；sdpa / eager / varlen 是本项目的名称",
    "default True is logged as not applied (eager layers); set explicitly, each decoder layer is compiled":
        "默认值 True 会在日志中记为未应用（各层以 eager 运行）；显式设置时，每个 decoder 层都会编译",
    # config fields: accepted, no effect (the reasons of the fields' compat_field)
    "HF exports are written synchronously here (the step after an export waits for it)":
        "这里同步写入 HF 导出（导出之后的那一步会等待它写完）",
    "XTuner's DCP planner shortcut for more than 512 ranks; no effect here":
        "XTuner 在超过 512 个 rank 时的 DCP planner 快捷路径；这里无作用",
    "XTuner's patch of torch 2.7's DCP; no effect here": "XTuner 针对 torch 2.7 DCP 的补丁；这里无作用",
    "the name prefix of XTuner's device meshes; no effect (one data-parallel mesh here)":
        "XTuner 各 device mesh 的名称前缀；无作用（这里只有一个数据并行 mesh）",
    "no effect here (token arrays are loaded in-process)": "这里无作用（token 数组在进程内加载）",
    "the media folder of multimodal data; no effect (text only)": "多模态数据的媒体文件夹；无作用（仅文本）",
    "no effect: empty samples carry no tokens and are always dropped (and counted)":
        "无作用：空样本没有 token，总会被丢弃（并计数）",
    "no effect: packing runs in-process": "无作用：pack 在进程内完成",
    "XTuner's torch.compile options; not applied (transformers' layers run eagerly here)":
        "XTuner 的 torch.compile 选项；不应用（这里 transformers 的层以 eager 模式运行）",
    "a setting of XTuner's parallel HF-export writer; no effect (rank 0 writes the export here)":
        "XTuner 并行 HF 导出写入器的一项设置；无作用（这里由 rank 0 写出导出）",
    "the settings of XTuner's parallel HF-export writer; no effect (rank 0 writes the export here)":
        "XTuner 并行 HF 导出写入器的设置；无作用（这里由 rank 0 写出导出）",
    "no effect: checkpoints hold every trained parameter (LoRA: the adapters' state)":
        "无作用：检查点保存每个训练的参数（LoRA：适配器的状态）",
    # reasons of refused fields (the fields' refused_unless_default), after "only XTuner's default; "
    "Fourier position embedding (FoPE) is not implemented": "未实现傅里叶位置编码（FoPE）",
    "HF exports are written in one dtype (bf16); no per-key fp32": "HF 导出只用一种 dtype（bf16）；不能按键名保留 fp32",
    "XTuner splits a micro batch inside a layer to overlap MoE communication; dense models here: use "
    "global_batch_size": "XTuner 在层内拆分 micro batch 以重叠 MoE 通信；这里是稠密模型：请用 global_batch_size",
    "XTuner's GPU health check (a collective matmul test) is not implemented":
        "未实现 XTuner 的 GPU 健康检查（一次集合通信的 matmul 测试）",
    "XTuner's GenerateConfig is for RL rollouts; use xtuner_nb.notebook.chat or eval_prompts":
        "XTuner 的 GenerateConfig 用于 RL rollout；请用 xtuner_nb.notebook.chat 或 eval_prompts",
    "XTuner's SwapAdamW (optimizer states swapped to host memory) is not implemented; use fsdp_cfg.cpu_offload=True "
    "(FSDP2 keeps params, grads and AdamW states on the CPU)":
        "未实现 XTuner 的 SwapAdamW（把优化器状态换出到主机内存）；请用 fsdp_cfg.cpu_offload=True"
        "（FSDP2 把参数、梯度和 AdamW 状态放在 CPU 上）",
    "XTuner's internal model metrics (per-layer statistics) are not implemented; use hooks":
        "未实现 XTuner 的内部模型指标（逐层统计）；请用 Hook",
    "XTuner's numeric probers are not implemented; use hooks (HooksConfig.after_train_step)":
        "未实现 XTuner 的数值 prober；请用 Hook（HooksConfig.after_train_step）",
    "XTuner's optimizer-state offload during the first step after a resume is not implemented; use "
    "fsdp_cfg.cpu_offload=True":
        "未实现 XTuner 在恢复训练后第一步 offload 优化器状态的做法；请用 fsdp_cfg.cpu_offload=True",
    "XTuner's preset packs (pack_level='preset') are not implemented; use pack_level='soft' or 'hard'":
        "未实现 XTuner 的 preset pack（pack_level='preset'）；请用 pack_level='soft' 或 'hard'",
    "XTuner's preset sampler order is not implemented; the length-grouped sampler is used":
        "未实现 XTuner 的 preset 采样顺序；使用按长度分组的采样器",
    "XTuner's preset sampler replays an order read from sampler_config_path; not implemented (the length-grouped "
    "sampler, group_by_length=True, is used)":
        "XTuner 的 preset 采样器按从 sampler_config_path 读取的顺序回放；未实现（使用按长度分组的采样器，"
        "group_by_length=True）",
    "a frozen model (XTuner's RL reference model) is not trained here; use lora_cfg to train a subset":
        "这里不训练冻结的模型（XTuner 的 RL 参考模型）；只训练部分参数请用 lora_cfg",
    "attention sinks belong to GPT-OSS": "attention sink 属于 GPT-OSS",
    "expert parallelism is for MoE models; this project trains dense Qwen3":
        "专家并行用于 MoE 模型；本项目训练稠密的 Qwen3",
    "float8 training needs XTuner's float8 kernels and an FP8 GPU (Hopper or newer); not implemented, train in bf16":
        "float8 训练需要 XTuner 的 float8 内核和支持 FP8 的 GPU（Hopper 或更新）；未实现，请用 bf16 训练",
    "gated attention belongs to Qwen3.5/Qwen3-Next": "门控注意力属于 Qwen3.5/Qwen3-Next",
    "linear attention (gated DeltaNet) belongs to Qwen3.5": "线性注意力（gated DeltaNet）属于 Qwen3.5",
    "multimodal RoPE belongs to vision-language models": "多模态 RoPE 属于视觉语言模型",
    "only text datasets (JsonlDataset) are supported; XTuner's VLMJsonlDataset is multimodal":
        "只支持文本数据集（JsonlDataset）；XTuner 的 VLMJsonlDataset 是多模态的",
    "packed training uses full attention": "pack 训练使用完整注意力",
    "sequence parallelism (one sequence split over GPUs) is not implemented; lower dataloader_cfg.pack_max_length, "
    "keep fsdp_cfg.recompute_ratio=1.0 or use CELossConfig(mode='chunk')":
        "未实现序列并行（把一条序列切分到多张 GPU 上）；请调小 dataloader_cfg.pack_max_length、保持 "
        "fsdp_cfg.recompute_ratio=1.0 或使用 CELossConfig(mode='chunk')",
    "tensor parallelism is not implemented (XTuner supports it for MoE models only); use FSDP over more GPUs "
    "(torchrun), fsdp_cfg.cpu_offload=True or LoRA to fit a larger model":
        "未实现张量并行（XTuner 仅对 MoE 模型支持）；要放下更大的模型，请在更多 GPU 上用 FSDP（torchrun）、"
        "fsdp_cfg.cpu_offload=True 或 LoRA",
    "the q/k norms are plain RMSNorm (zero-centred norms belong to other XTuner models)":
        "q/k norm 是普通的 RMSNorm（零中心化的 norm 属于 XTuner 的其他模型）",
    "the training forward returns the loss only": "训练时的前向只返回 loss",
    "there are no multi-token-prediction (MTP) layers in Qwen3 dense": "稠密 Qwen3 没有多 token 预测（MTP）层",
    "there is no vision tower (text-only models)": "没有视觉塔（仅文本模型）",
    "these models use plain RMSNorm": "这些模型使用普通的 RMSNorm",
    "this architecture's MLP has no bias": "该架构的 MLP 没有 bias",
    "weights are loaded by their HF names (transformers' modules); no key remapping":
        "权重按 HF 名称加载（transformers 的模块）；不做键名重映射",
}
