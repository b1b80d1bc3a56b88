/* Forced into the generated model's compilation unit (gcc -include) so that
 * -DEDGESHIP_OP_HOOK(i)=edgeship_op_boundary(i) calls a declared function. */
#ifndef EDGESHIP_PROFILE_HOOK_H_
#define EDGESHIP_PROFILE_HOOK_H_
void edgeship_op_boundary(int index);
#endif
